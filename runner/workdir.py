"""The per-attempt work directory: created fresh for each attempt, removed after it, whatever
happened. Nothing the bundle wrote there can reach the next attempt."""

from __future__ import annotations

import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runner.launch import WorkDirs


def attempts_root(work_root: Path) -> Path:
    """Where attempt directories live."""
    return work_root / "attempts"


@contextmanager
def attempt_dir(work_root: Path, label: str) -> Iterator[WorkDirs]:
    """A fresh `task/`, `home/` and `tmp/` for one attempt, wiped on exit."""
    parent = attempts_root(work_root)
    parent.mkdir(parents=True, exist_ok=True, mode=0o711)
    root = Path(tempfile.mkdtemp(prefix=f"{_safe(label)}-", dir=parent))
    try:
        dirs = WorkDirs(task_root=root / "task", home=root / "home", tmp=root / "tmp")
        for path in (dirs.task_root, dirs.home, dirs.tmp):
            path.mkdir()
        yield dirs
    finally:
        remove_tree(root)


def remove_tree(root: Path) -> None:
    """Remove `root` even where the bundle took away its own write or search permissions."""

    def make_writable_and_retry(_func: object, name: str, _exc: BaseException) -> None:
        path = Path(name)
        path.parent.chmod(stat.S_IRWXU)
        if path.is_dir() and not path.is_symlink():
            path.chmod(stat.S_IRWXU)
            shutil.rmtree(path, onexc=make_writable_and_retry)
        else:
            path.unlink()

    if root.exists():
        shutil.rmtree(root, onexc=make_writable_and_retry)


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[:64]
