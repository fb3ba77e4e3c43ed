"""Verified bundle zips kept between tasks, keyed by SHA-256 and bounded in bytes (LRU).

A cached zip is re-hashed before every use: an earlier bundle ran as our uid (in Lambda) and
could have rewritten it. A copy that no longer matches its name is discarded and fetched again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from runner.bundle.fetch import FetchedBundle
from runner.bundle.verify import sha256_file

__all__ = ["BundleCache", "Lookup"]


@dataclass(frozen=True)
class Lookup:
    """What the cache had for a hash."""

    path: Path | None  # a zip that hashes to the key, or None
    poisoned: bool = False  # a copy was there but no longer matched, and was discarded


class BundleCache:
    """The cache directory and its byte budget."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def _path(self, sha256: str) -> Path:
        return self.root / f"{sha256}.zip"

    def lookup(self, sha256: str) -> Lookup:
        """The cached zip for `sha256`, re-verified now."""
        path = self._path(sha256)
        try:
            actual = sha256_file(path)
        except FileNotFoundError:
            return Lookup(None)
        if actual != sha256:
            path.unlink(missing_ok=True)
            return Lookup(None, poisoned=True)
        os.utime(path)  # its modification time is its last use, for LRU eviction
        return Lookup(path)

    def store(self, fetched: FetchedBundle) -> bool:
        """Move a verified download into the cache; False when it is larger than the whole
        cache, in which case it stays where it is and the caller removes it after use."""
        if fetched.size > self.max_bytes:
            return False
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._evict(room_for=fetched.size)
        fetched.path.replace(self._path(fetched.sha256))
        return True

    def path_of(self, fetched: FetchedBundle, *, cached: bool) -> Path:
        """Where a fetched bundle is now."""
        return self._path(fetched.sha256) if cached else fetched.path

    def _evict(self, room_for: int) -> None:
        entries = []
        for entry in os.scandir(self.root):
            if entry.name.endswith(".zip") and entry.is_file(follow_symlinks=False):
                info = entry.stat(follow_symlinks=False)
                entries.append((info.st_mtime_ns, info.st_size, Path(entry.path)))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total + room_for <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
