"""Verified zips are cached by hash, re-hashed on every use, and bounded in bytes (LRU)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from runner.bundle.cache import BundleCache
from runner.bundle.fetch import FetchedBundle


def _fetched(folder: Path, content: bytes) -> FetchedBundle:
    folder.mkdir(exist_ok=True)
    path = folder / f"{len(list(folder.iterdir()))}.part"
    path.write_bytes(content)
    return FetchedBundle(path, len(content), hashlib.sha256(content).hexdigest())


def test_a_stored_bundle_is_found_again(tmp_path: Path) -> None:
    cache = BundleCache(tmp_path / "cache", max_bytes=1000)
    fetched = _fetched(tmp_path / "dl", b"zip bytes")

    assert cache.store(fetched)
    found = cache.lookup(fetched.sha256)

    assert found.path is not None
    assert found.path.read_bytes() == b"zip bytes"
    assert not fetched.path.exists()


def test_a_miss_is_not_poisoned(tmp_path: Path) -> None:
    found = BundleCache(tmp_path / "cache", max_bytes=1000).lookup("00" * 32)

    assert (found.path, found.poisoned) == (None, False)


def test_a_rewritten_cached_zip_is_discarded(tmp_path: Path) -> None:
    cache = BundleCache(tmp_path / "cache", max_bytes=1000)
    fetched = _fetched(tmp_path / "dl", b"genuine")
    cache.store(fetched)
    cached = cache.path_of(fetched, cached=True)
    cached.write_bytes(b"tampered by the last bundle")

    found = cache.lookup(fetched.sha256)

    assert (found.path, found.poisoned) == (None, True)
    assert not cached.exists()


def test_least_recently_used_bundles_are_evicted_to_fit(tmp_path: Path) -> None:
    cache = BundleCache(tmp_path / "cache", max_bytes=25)
    first, second = _fetched(tmp_path / "dl", b"a" * 10), _fetched(tmp_path / "dl", b"b" * 10)
    cache.store(first)
    cache.store(second)
    os.utime(cache.path_of(first, cached=True), ns=(1, 1))  # first was used longest ago
    cache.lookup(second.sha256)

    cache.store(_fetched(tmp_path / "dl", b"c" * 10))

    assert cache.lookup(first.sha256).path is None
    assert cache.lookup(second.sha256).path is not None


def test_a_bundle_larger_than_the_cache_is_not_cached(tmp_path: Path) -> None:
    cache = BundleCache(tmp_path / "cache", max_bytes=5)
    fetched = _fetched(tmp_path / "dl", b"too large")

    assert not cache.store(fetched)
    assert cache.path_of(fetched, cached=False) == fetched.path
    assert fetched.path.exists()
