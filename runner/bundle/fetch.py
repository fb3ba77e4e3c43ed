"""Streaming the pinned bundle from S3 into a file, hashing it as the bytes arrive.

One pass: each chunk is hashed and written as it is read, so memory stays at one chunk whatever
the bundle's size, and the compressed-size limit is enforced before the bytes are on disk. The
bundle is read with the task's minted credentials, never the runner's own.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path

from runner.bundle.verify import verify
from runner.deadline import Deadline
from runner.errors import (
    AccessDeniedError,
    BundleNotFoundError,
    BundleTooLargeError,
    StorageUnavailableError,
)
from runner.platform import ServiceUnavailable
from runner.platform.minter import ScopedCredentials
from runner.platform.s3 import BrokenStream, S3Error, S3Object, S3Reader
from runner.steps import NEVER, Cancellation

__all__ = [
    "CHUNK",
    "STREAM_ATTEMPTS",
    "FetchedBundle",
    "fetch",
    "split_uri",
]

CHUNK = 1024 * 1024
#: Whole-object attempts when the stream breaks midway (`S3Reader` retries each request itself).
STREAM_ATTEMPTS = 3
_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound"})
_DENIED = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                     "ExpiredToken", "InvalidToken", "AllAccessDisabled"})


@dataclass(frozen=True)
class FetchedBundle:
    """A bundle on disk whose SHA-256 matched the pin."""

    path: Path
    size: int
    sha256: str


def split_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` → (bucket, key)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def fetch(uri: str, expected_sha256: str, *, s3: S3Reader, credentials: ScopedCredentials,
          dest_dir: Path, max_bytes: int, deadline: Deadline,
          cancellation: Cancellation = NEVER) -> FetchedBundle:
    """Stream `uri` into a new file under `dest_dir` with the task's `credentials` and verify it
    against the pin.

    On any failure, a mismatch or a cancellation included, the partial file is deleted: nothing
    unverified is left for extraction to find.
    """
    dest_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = dest_dir / f"{uuid.uuid4().hex}.part"
    try:
        size, digest = _download_retrying(uri, s3, credentials, path, max_bytes,
                                          deadline=deadline, cancellation=cancellation)
        verify(digest, expected_sha256, uri)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FetchedBundle(path=path, size=size, sha256=digest)


def _download_retrying(uri: str, s3: S3Reader, credentials: ScopedCredentials, path: Path,
                       max_bytes: int, *, deadline: Deadline,
                       cancellation: Cancellation) -> tuple[int, str]:
    """Download, starting over when the stream breaks midway; S3's errors become ours. A
    stream cut by a cancellation (see `_download`) ends it with `CancelledError`."""
    bucket, key = split_uri(uri)
    attempt = 1
    while True:
        cancellation.check()
        try:
            body = s3.open(bucket, key, credentials, deadline, cancellation)
            return _download(body, path, max_bytes=max_bytes, cancellation=cancellation)
        except BrokenStream as e:
            cancellation.check()
            if attempt >= STREAM_ATTEMPTS or deadline.remaining() <= 0:
                raise StorageUnavailableError(f"reading {uri} kept failing: {e}") from e
            attempt += 1
        except S3Error as e:
            raise _refused(uri, e) from e
        except (ServiceUnavailable, OSError) as e:
            cancellation.check()
            raise StorageUnavailableError(f"could not read {uri}: {e}") from e


def _download(body: S3Object, path: Path, *, max_bytes: int,
              cancellation: Cancellation) -> tuple[int, str]:
    # A cancellation shuts the socket, so that a read blocked on a slow S3 returns at once; the
    # body is closed whatever happens, so that its connection is not left half read.
    with body:
        if body.length is not None and body.length > max_bytes:
            raise BundleTooLargeError(f"bundle is {body.length} bytes compressed; the limit is "
                                      f"{max_bytes}")
        hasher = hashlib.sha256()
        size = 0
        with path.open("wb") as out, cancellation.aborting(body.abort):
            while chunk := body.read(CHUNK):
                cancellation.check()
                size += len(chunk)
                if size > max_bytes:
                    raise BundleTooLargeError(
                        f"bundle is over the {max_bytes}-byte compressed limit")
                hasher.update(chunk)
                out.write(chunk)
    return size, hasher.hexdigest()


def _refused(uri: str, error: S3Error) -> Exception:
    if error.code in _NOT_FOUND or error.status == 404:
        return BundleNotFoundError(f"no bundle at {uri}")
    if error.code in _DENIED or error.status == 403:
        return AccessDeniedError(f"S3 refused to read {uri} with the task's credentials "
                                 f"({error.code or error.status})")
    return StorageUnavailableError(f"S3 failed reading {uri}: {error}")
