"""Fixtures of the integration tier."""

from __future__ import annotations

import resource
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import transfer_stats
from devstack.stack import LocalStack
from tests.support.tasks import Tasks, settings_for


@pytest.fixture
def tasks(local_stack: LocalStack, work_root: Path) -> Tasks:
    """A pipeline (a fresh execution environment) on the local stack."""
    return Tasks(local_stack, settings_for(local_stack, work_root))


@pytest.fixture
def lambdas_descriptor_limit() -> Iterator[None]:
    """The runner with Lambda's 1,024 descriptors, as it has there."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="session")
def transfer_stats_zip() -> Path:
    """The Rust/Polars sample's zip, from the build cache (`make fixtures` fills it first: a
    cold build takes longer than a test may)."""
    return transfer_stats.build()
