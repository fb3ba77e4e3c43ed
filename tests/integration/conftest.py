"""Fixtures of the integration tier."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.stack import LocalStack
from tests.support.tasks import Tasks, settings_for


@pytest.fixture
def tasks(local_stack: LocalStack, work_root: Path) -> Tasks:
    """A pipeline (a fresh execution environment) on the local stack."""
    return Tasks(local_stack, settings_for(local_stack, work_root))
