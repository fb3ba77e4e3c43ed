"""Removing a directory tree a bundle wrote, however deep or however it is locked.

A bundle chooses the shape of what it leaves: 1,200 nested directories go past both Python's
recursion limit and the 1,024 descriptors Lambda allows (`shutil.rmtree` keeps one open per
level), and their paths past PATH_MAX. So the walk here is a loop, not a recursion; it holds
at most three descriptors at once (the directory it is in, the one it opens, and the copy a
listing makes), never builds a path longer than one name, and keeps in memory only the names
on the way down (and what each level still has to visit). It goes back up through `..`, and
checks the directory it lands in is the one it came from (device and inode), so nothing can
lead it elsewhere. Links are never followed: a symbolic link is an entry like any other.

Directories the bundle made unreadable or unsearchable are opened up first (a same-uid runner
may change the modes of what its uid owns; root needs no permission anyway).

Callers run this once every process that could write there is dead, so nothing moves while it
works. Anything it cannot remove raises OSError naming the path.
"""

from __future__ import annotations

import errno
import os
import stat
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["names", "remove_entry", "remove_tree"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: What the walk needs on a directory of its own: list it, enter it, remove from it.
_OWNER_RWX = stat.S_IRWXU


@dataclass
class _Level:
    """A directory on the way down: its name in its parent, its identity, the subdirectories
    it still has to visit."""

    name: str
    device: int
    inode: int
    pending: list[str] = field(default_factory=list)


def remove_tree(path: Path) -> None:
    """Remove `path` (a directory, a file or a link) and everything in it; a missing `path` is
    fine."""
    try:
        parent = os.open(path.parent, _DIR_FLAGS)
    except FileNotFoundError:
        return
    try:
        remove_entry(parent, path.name, shown=str(path))
    finally:
        os.close(parent)


def remove_entry(parent: int, name: str, *, shown: str) -> None:
    """Remove the entry `name` of the directory open as `parent`, and, for a directory,
    everything in it. `shown` names it in errors."""
    try:
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        _unlink(parent, name)
        return
    try:
        _empty(parent, name)
        os.rmdir(name, dir_fd=parent)
    except OSError as e:
        raise OSError(e.errno, f"cannot remove {shown}: {e.strerror}") from e


def _empty(parent: int, name: str) -> None:
    """Remove everything inside the directory `name` of `parent`, depth first, in a loop."""
    fd = _open_dir(parent, name)
    try:
        levels = [_enter(fd, name)]
        while True:
            level = levels[-1]
            if level.pending:
                sub = level.pending.pop()
                child = _open_dir(fd, sub)
                os.close(fd)
                fd = child
                levels.append(_enter(fd, sub))
                continue
            # Everything below was visited; whatever is still here (nothing, unless something
            # wrote meanwhile) is visited again before leaving.
            level.pending = _clear_files(fd)
            if level.pending:
                continue
            if len(levels) == 1:
                return
            fd = _up(fd, levels)
    finally:
        os.close(fd)


def _enter(fd: int, name: str) -> _Level:
    """The level for the directory just opened as `fd`, its files already removed."""
    info = os.fstat(fd)
    return _Level(name, info.st_dev, info.st_ino, _clear_files(fd))


def _up(fd: int, levels: list[_Level]) -> int:
    """From the emptied directory `fd` (the last level) back to its parent, removing it there;
    returns the parent's descriptor (and closes `fd`)."""
    parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
    os.close(fd)
    done, above = levels.pop(), levels[-1]
    info = os.fstat(parent)
    if (info.st_dev, info.st_ino) != (above.device, above.inode):
        os.close(parent)
        raise OSError(errno.ESTALE, f"{done.name!r} was moved out of its directory")
    os.rmdir(done.name, dir_fd=parent)
    return parent


def _clear_files(fd: int) -> list[str]:
    """Remove every entry of the directory `fd` that is not a directory; the directories."""
    subdirs = []
    for name in names(fd):
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(info.st_mode):
            subdirs.append(name)
        else:
            _unlink(fd, name)
    return subdirs


def names(fd: int) -> list[str]:
    """The entries of the directory open as `fd` (the listing uses a copy of `fd`)."""
    with os.scandir(fd) as entries:
        return [entry.name for entry in entries]


def _unlink(parent: int, name: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(name, dir_fd=parent)


def _open_dir(parent: int, name: str) -> int:
    """Open the directory `name` of `parent` to list it, enter it and remove from it, giving
    it back the owner's permissions when the bundle took them away."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    except PermissionError:
        _chmod_owner_rwx(parent, name)
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    if os.fstat(fd).st_mode & _OWNER_RWX != _OWNER_RWX and os.geteuid() != 0:
        try:
            os.fchmod(fd, _OWNER_RWX)
        except BaseException:
            os.close(fd)
            raise
    return fd


def _chmod_owner_rwx(parent: int, name: str) -> None:
    """chmod 0700 without following a link: through an O_PATH descriptor of the directory
    itself (fchmodat cannot refuse links on most kernels)."""
    handle = os.open(name, _PATH_FLAGS, dir_fd=parent)
    try:
        Path(f"/proc/self/fd/{handle}").chmod(_OWNER_RWX)
    finally:
        os.close(handle)
