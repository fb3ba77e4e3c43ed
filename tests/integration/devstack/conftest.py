"""Fixtures of the local tools' integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack import transfer_stats


@pytest.fixture(scope="session")
def transfer_stats_zip() -> Path:
    """The Rust/Polars sample's zip, from the build cache (`make fixtures` fills it first: a
    cold build takes longer than a test may)."""
    return transfer_stats.build()
