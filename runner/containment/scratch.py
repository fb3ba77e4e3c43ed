"""Files the child left outside its work dir: found by owner in the scratch dirs, and removed.

Outside its own work dir the child can write only where its uid may: entries it owns, and
world-writable directories (`/tmp`, `/var/tmp`, `/dev/shm`, `/run/lock`). So everything it
wrote is an entry owned by its uid, reached by descending only into world-writable directories
and into directories on the way to a path that is kept. An entry of another uid is never
touched (a developer's own files, another runner's), and nothing is followed through a link.
Callers run this only once every process of the uid is dead, so nothing moves underneath.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection, Iterable
from pathlib import Path

from runner.containment.workdir import remove_tree

__all__ = ["remove_owned"]


def remove_owned(dirs: Iterable[Path], uid: int, *, keep: Collection[Path] = ()) -> list[Path]:
    """Remove every entry owned by `uid` under `dirs`, except the paths in `keep` (and what is
    in them); returns what was removed."""
    removed: list[Path] = []
    # Paths as strings: every entry of /tmp is compared with `keep` after each attempt, and
    # pathlib's comparisons cost more than the scan. Both sides are normalised (str of a Path,
    # and os.scandir's joins of one), so a prefix up to a "/" is what is_relative_to checks.
    kept = frozenset(map(str, keep))
    for directory in dirs:
        if directory.is_dir() and not directory.is_symlink():
            _clean(str(directory), uid, kept, removed)
    return removed


def _clean(directory: str, uid: int, keep: frozenset[str], removed: list[Path]) -> None:
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return
    for entry in entries:
        path = entry.path
        if path in keep:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        is_dir = stat.S_ISDIR(info.st_mode)
        if is_dir and _holds_kept(path, keep):
            _clean(path, uid, keep, removed)
        elif info.st_uid == uid:
            owned = Path(path)
            if is_dir:
                remove_tree(owned)
            else:
                owned.unlink(missing_ok=True)
            removed.append(owned)
        elif is_dir and info.st_mode & stat.S_IWOTH:
            _clean(path, uid, keep, removed)


def _holds_kept(directory: str, keep: frozenset[str]) -> bool:
    """Whether a kept path lies inside `directory`."""
    inside = directory.rstrip("/") + "/"
    return any(path.startswith(inside) for path in keep)
