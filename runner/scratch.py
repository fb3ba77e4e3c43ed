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

from runner.workdir import remove_tree


def remove_owned(dirs: Iterable[Path], uid: int, *, keep: Collection[Path] = ()) -> list[Path]:
    """Remove every entry owned by `uid` under `dirs`, except the paths in `keep` (and what is
    in them); returns what was removed."""
    removed: list[Path] = []
    for directory in dirs:
        if directory.is_dir() and not directory.is_symlink():
            _clean(directory, uid, keep, removed)
    return removed


def _clean(directory: Path, uid: int, keep: Collection[Path], removed: list[Path]) -> None:
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return
    for entry in entries:
        path = Path(entry.path)
        if path in keep:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        is_dir = stat.S_ISDIR(info.st_mode)
        if is_dir and any(k.is_relative_to(path) for k in keep):
            _clean(path, uid, keep, removed)
        elif info.st_uid == uid:
            if is_dir:
                remove_tree(path)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
        elif is_dir and info.st_mode & stat.S_IWOTH:
            _clean(path, uid, keep, removed)
