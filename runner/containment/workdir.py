"""The per-attempt work directory: created fresh for each attempt, removed after it, whatever
happened. Nothing the bundle wrote there can reach the next attempt.

When the child runs as another uid (`owner`), `home/` and `tmp/` are its own (0700) and
`task/` stays the runner's (0755: readable, not writable, by the child); every directory above
them must be searchable by others for the child to get there (the attempt's own is 0711).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["WorkDirs", "attempt_dir", "attempts_root", "remove_tree"]


@dataclass(frozen=True)
class WorkDirs:
    """The attempt's directories: the extracted bundle, and HOME/TMPDIR for the child."""

    task_root: Path
    home: Path
    tmp: Path


def attempts_root(work_root: Path) -> Path:
    """Where attempt directories live."""
    return work_root / "attempts"


@contextmanager
def attempt_dir(work_root: Path, label: str, *,
                owner: tuple[int, int] | None = None) -> Iterator[WorkDirs]:
    """A fresh `task/`, `home/` and `tmp/` for one attempt, wiped on exit; `home/` and `tmp/`
    belong to `owner` (uid, gid) when given."""
    parent = attempts_root(work_root)
    parent.mkdir(parents=True, exist_ok=True)
    parent.chmod(0o711)  # whatever the umask: another uid must pass through it
    root = Path(tempfile.mkdtemp(prefix=f"{_safe(label)}-", dir=parent))
    try:
        root.chmod(0o711)
        dirs = WorkDirs(task_root=root / "task", home=root / "home", tmp=root / "tmp")
        dirs.task_root.mkdir(mode=0o755)
        dirs.task_root.chmod(0o755)  # whatever the umask
        for path in (dirs.home, dirs.tmp):
            path.mkdir(mode=0o700)
            if owner is not None:
                os.chown(path, *owner)
        yield dirs
    finally:
        remove_tree(root)


def remove_tree(root: Path) -> None:
    """Remove `root` even where the bundle took away its own write or search permissions.
    Nothing above `root` is changed: a failure at `root` itself (a symlink, a file, a tree
    still being written to) once made its parent, /tmp for a test, 0700."""

    def make_writable_and_retry(_func: object, name: str, _exc: BaseException) -> None:
        path = Path(name)
        if path != root:
            path.parent.chmod(stat.S_IRWXU)  # a directory of the tree, never one above it
        if path.is_dir() and not path.is_symlink():
            path.chmod(stat.S_IRWXU)
            shutil.rmtree(path, onexc=make_writable_and_retry)
        else:
            path.unlink(missing_ok=True)

    if root.exists():
        shutil.rmtree(root, onexc=make_writable_and_retry)


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[:64]
