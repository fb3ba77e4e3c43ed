"""Fixtures shared by every test tier."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.settings import Settings


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    """No test leaks a change of `os.environ` into the next."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def work_root(tmp_path: Path) -> Path:
    """A work root private to the test (never the developer's own /tmp/udf-runner)."""
    root = tmp_path / "work"
    root.mkdir()
    return root


@pytest.fixture
def settings(work_root: Path) -> Settings:
    """Default settings, with the work root inside the test's own directory."""
    return Settings.from_env({"UDF_RUNNER_WORK_ROOT": str(work_root)})
