"""Fixtures shared by the runner's integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def shared(work_root: Path) -> Path:
    """A directory the child may write to that no runner cleans: where a survivor would show."""
    path = work_root.parent / "shared"
    path.mkdir()
    path.chmod(0o1777)
    return path
