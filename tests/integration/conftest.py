"""Fixtures of the integration tier: the local stack, shared by the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import LocalStack
from tests.tasks import Tasks, settings_for


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """S3 (moto, real HTTP), the credential minter, the Query Service and the token issuer."""
    with LocalStack.start() as stack:
        yield stack


@pytest.fixture
def tasks(local_stack: LocalStack, work_root: Path) -> Tasks:
    """A pipeline (a fresh execution environment) on the local stack."""
    return Tasks(local_stack, settings_for(local_stack, work_root))
