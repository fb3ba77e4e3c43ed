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

from runner.containment.removal import names, remove_entry

__all__ = ["remove_owned"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def remove_owned(dirs: Iterable[Path], uid: int, *, keep: Collection[Path] = ()) -> list[Path]:
    """Remove every entry owned by `uid` under `dirs`, except the paths in `keep` (and what is
    in them); returns what was removed. A loop over the directories still to look into, not a
    recursion: how deep they go is not the runner's choice."""
    removed: list[Path] = []
    # Paths as strings: every entry of /tmp is compared with `keep` after each attempt, and
    # pathlib's comparisons cost more than the scan. Both sides are normalised (str of a Path,
    # and os.path.join of one), so a prefix up to a "/" is what is_relative_to checks.
    kept = frozenset(map(str, keep))
    to_visit = [str(d) for d in dirs if d.is_dir() and not d.is_symlink()]
    while to_visit:
        to_visit += _clean(to_visit.pop(), uid, kept, removed)
    return removed


def _clean(directory: str, uid: int, keep: frozenset[str], removed: list[Path]) -> list[str]:
    """Remove what `uid` owns directly in `directory`; returns the subdirectories to look
    into (world-writable ones of other uids, and those on the way to a kept path)."""
    try:
        fd = os.open(directory, _DIR_FLAGS)
    except FileNotFoundError:
        return []
    look_into = []
    try:
        for name in names(fd):
            path = f"{directory.rstrip("/")}/{name}"
            if path in keep:
                continue
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            is_dir = stat.S_ISDIR(info.st_mode)
            if is_dir and _holds_kept(path, keep):
                look_into.append(path)
            elif info.st_uid == uid:
                remove_entry(fd, name, shown=path)
                removed.append(Path(path))
            elif is_dir and info.st_mode & stat.S_IWOTH:
                look_into.append(path)
    finally:
        os.close(fd)
    return look_into


def _holds_kept(directory: str, keep: frozenset[str]) -> bool:
    """Whether a kept path lies inside `directory`."""
    inside = directory.rstrip("/") + "/"
    return any(path.startswith(inside) for path in keep)
