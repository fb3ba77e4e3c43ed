"""Integrity: a bundle runs only if its bytes hash to the SHA-256 the control plane pinned.

The download is hashed as it arrives (`runner.bundle.fetch`); a cached copy is hashed again
before every use (`runner.bundle.cache`). Either way the comparison is made here.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from runner.errors import IntegrityMismatchError

__all__ = ["sha256_file", "verify"]


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, read in large blocks."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify(digest: str, expected_sha256: str, what: str) -> None:
    """Compare in constant time; a mismatch is `Bundle.IntegrityMismatch`."""
    if not hmac.compare_digest(digest, expected_sha256):
        raise IntegrityMismatchError(f"{what} has SHA-256 {digest}, not the pinned "
                                     f"{expected_sha256}; nothing was extracted or run")
