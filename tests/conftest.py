"""Fixtures shared by every test tier."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from runner.containment.removal import remove_tree
from runner.settings import Settings

if TYPE_CHECKING:
    from devstack.stack import LocalStack


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    """No test leaks a change of `os.environ` into the next."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def work_root() -> Iterator[Path]:
    """A work root private to the test (never the developer's own /tmp/udf-runner).

    Not under pytest's tmp_path: that is 0700, and the child runs as the sandbox uid when the
    tests run as root, so every directory above its work dir must be searchable by others.
    """
    base = Path(tempfile.mkdtemp(prefix="udf-runner-test-"))
    try:
        base.chmod(0o711)
        root = base / "work"
        root.mkdir(mode=0o755)
        yield root
    finally:
        remove_tree(base)


def sandbox_ids() -> dict[str, str]:
    """The sandbox uid and gid from this process's environment, if set: suites run at once on
    one machine each take their own, or each would see (and sweep) the other's processes."""
    return {name: os.environ[name] for name in ("UDF_RUNNER_SANDBOX_UID", "UDF_RUNNER_SANDBOX_GID")
            if name in os.environ}


@pytest.fixture
def settings(work_root: Path) -> Settings:
    """Default settings, with the work root inside the test's own directory."""
    return Settings.from_env({"UDF_RUNNER_WORK_ROOT": str(work_root), **sandbox_ids()})


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """S3 (moto, real HTTP), the credential minter, the Query Service and the token issuer,
    started once for the session."""
    from devstack.stack import LocalStack

    with LocalStack.start() as stack:
        yield stack
