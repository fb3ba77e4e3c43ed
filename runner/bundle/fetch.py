"""Streaming the pinned bundle from S3 into a file, hashing it as the bytes arrive.

One pass: each chunk is hashed and written as it is read, so memory stays at one chunk whatever
the bundle's size, and the compressed-size limit is enforced before the bytes are on disk. The
bundle is read with the task's minted credentials, never the runner's own.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.bundle.verify import verify
from runner.deadline import Deadline
from runner.errors import (
    AccessDeniedError,
    BundleNotFoundError,
    BundleTooLargeError,
    StorageUnavailableError,
)
from runner.platform.minter import ScopedCredentials
from runner.steps import NEVER, Cancellation

__all__ = [
    "CHUNK",
    "STREAM_ATTEMPTS",
    "FetchedBundle",
    "S3ClientFactory",
    "S3Clients",
    "fetch",
    "split_uri",
]

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CHUNK = 1024 * 1024
#: Whole-object attempts when the stream breaks midway (botocore retries each request itself).
STREAM_ATTEMPTS = 3
_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})
_DENIED = frozenset({"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                     "ExpiredToken", "InvalidToken", "AllAccessDisabled"})

S3ClientFactory = Callable[[ScopedCredentials, Deadline], "S3Client"]


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


class S3Clients:
    """Makes S3 clients for minted credentials from one botocore session.

    boto3 is imported on first use, not at cold start: it is the heaviest import of the function,
    and a task that fails validation never needs it. The session's loader caches the S3 model, so
    a client per task costs little after the first.
    """

    def __init__(self, *, region: str, endpoint_url: str = "", max_attempts: int = 5) -> None:
        self._region = region
        self._endpoint_url = endpoint_url or None
        self._max_attempts = max_attempts  # per request, the first included
        self._session: Any = None

    def __call__(self, credentials: ScopedCredentials, deadline: Deadline) -> S3Client:
        import botocore.config  # noqa: PLC0415 - see the class docstring
        import botocore.session  # noqa: PLC0415

        if self._session is None:
            self._session = botocore.session.get_session()
        config = botocore.config.Config(
            retries={"mode": "standard", "total_max_attempts": self._max_attempts},
            connect_timeout=min(5.0, max(deadline.remaining(), 0.1)),
            read_timeout=min(30.0, max(deadline.remaining(), 0.1)),
            s3={"addressing_style": "path"} if self._endpoint_url else {},
        )
        client: S3Client = self._session.create_client(
            "s3", region_name=self._region, endpoint_url=self._endpoint_url, config=config,
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token,
        )
        return client


def fetch(uri: str, expected_sha256: str, *, client: S3Client, dest_dir: Path, max_bytes: int,
          deadline: Deadline, cancellation: Cancellation = NEVER) -> FetchedBundle:
    """Stream `uri` into a new file under `dest_dir` and verify it against the pin.

    On any failure, a mismatch or a cancellation included, the partial file is deleted: nothing
    unverified is left for extraction to find.
    """
    dest_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = dest_dir / f"{uuid.uuid4().hex}.part"
    try:
        size, digest = _download_retrying(uri, client, path, max_bytes, deadline=deadline,
                                          cancellation=cancellation)
        verify(digest, expected_sha256, uri)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FetchedBundle(path=path, size=size, sha256=digest)


def _download_retrying(uri: str, client: S3Client, path: Path, max_bytes: int, *,
                       deadline: Deadline, cancellation: Cancellation) -> tuple[int, str]:
    """Download, starting over when the stream breaks midway; S3's errors become ours. A
    stream cut by a cancellation (see `_download`) ends it with `CancelledError`."""
    import botocore.exceptions as boto_errors  # noqa: PLC0415 - boto3 is lazy (see S3Clients)

    bucket, key = split_uri(uri)
    broken = (boto_errors.ResponseStreamingError, boto_errors.IncompleteReadError,
              boto_errors.ReadTimeoutError)
    attempt = 1
    while True:
        cancellation.check()
        try:
            return _download(client, bucket, key, path, max_bytes=max_bytes,
                             cancellation=cancellation)
        except broken as e:
            cancellation.check()
            if attempt >= STREAM_ATTEMPTS or deadline.remaining() <= 0:
                raise StorageUnavailableError(f"reading {uri} kept failing: {e}") from e
            attempt += 1
        except boto_errors.ClientError as e:
            raise _client_error(uri, e) from e
        except (boto_errors.BotoCoreError, OSError) as e:
            cancellation.check()
            raise StorageUnavailableError(f"could not read {uri}: {e}") from e


def _download(client: S3Client, bucket: str, key: str, path: Path, *, max_bytes: int,
              cancellation: Cancellation) -> tuple[int, str]:
    obj = client.get_object(Bucket=bucket, Key=key)
    declared = obj.get("ContentLength", 0)
    if declared > max_bytes:
        obj["Body"].close()
        raise BundleTooLargeError(f"bundle is {declared} bytes compressed; the limit is "
                                  f"{max_bytes}")
    hasher = hashlib.sha256()
    size = 0
    body = obj["Body"]
    # A cancellation shuts the socket, so that a read blocked on a slow S3 returns at once; the
    # body is closed whatever happens, so that its connection is not left to the collector.
    with (path.open("wb") as out, contextlib.closing(body),
          cancellation.aborting(lambda: _shut(body))):
        while chunk := body.read(CHUNK):
            cancellation.check()
            size += len(chunk)
            if size > max_bytes:
                body.close()
                raise BundleTooLargeError(f"bundle is over the {max_bytes}-byte compressed limit")
            hasher.update(chunk)
            out.write(chunk)
    return size, hasher.hexdigest()


def _shut(body: Any) -> None:
    """Wake the thread blocked reading `body`: shut the socket under botocore's stream
    (urllib3's `HTTPResponse.shutdown`, made for interrupting a read from another thread)."""
    raw = getattr(body, "_raw_stream", None)  # botocore's StreamingBody keeps it there
    shutdown = getattr(raw, "shutdown", None)
    if callable(shutdown):
        with contextlib.suppress(OSError, ValueError, RuntimeError):  # already closed or reused
            shutdown()


def _client_error(uri: str, error: Any) -> Exception:
    code = str(error.response.get("Error", {}).get("Code", ""))
    status = str(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    if code in _NOT_FOUND or status == "404":
        return BundleNotFoundError(f"no bundle at {uri}")
    if code in _DENIED or status == "403":
        return AccessDeniedError(f"S3 refused to read {uri} with the task's credentials ({code})")
    return StorageUnavailableError(f"S3 failed reading {uri}: {code or status}")
