"""The per-attempt work directory: created fresh for each attempt, removed after it, whatever
happened. Nothing the bundle wrote there can reach the next attempt.

When the child runs as another uid (`owner`), `home/` and `tmp/` are its own (0700) and
`task/` stays the runner's, in the child's group (0750: readable, not writable, by the child,
and by no other uid: another runner's bundle on the same machine cannot read this bundle's
code, though its path shows in the child's command line); every directory above them must be
searchable by others for the child to get there (the attempt's own is 0711). Without `owner`
the child is the runner's uid, and `task/` is 0700.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from runner.containment.removal import remove_tree
from runner.errors import CleanupFailedError

__all__ = ["WorkDirs", "attempt_dir", "attempts_root"]


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
        dirs.task_root.mkdir(mode=0o700)
        if owner is not None:
            os.chown(dirs.task_root, -1, owner[1])
            dirs.task_root.chmod(0o750)  # whatever the umask
        for path in (dirs.home, dirs.tmp):
            path.mkdir(mode=0o700)
            if owner is not None:
                os.chown(path, *owner)
        yield dirs
    finally:
        try:
            remove_tree(root)
        except OSError as e:
            raise CleanupFailedError(f"the attempt's work dir could not be removed: {e}") from e


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[:64]
