"""Streaming the bundle from S3 over real HTTP: one pass hashing, limits, and S3's errors mapped.

S3 is moto in server mode (a real HTTP server); the failures moto cannot produce on demand
(403, persistent 503) come from a scripted HTTP server answering as S3 does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from runner.bundle.fetch import fetch
from runner.deadline import Deadline
from runner.errors import (
    AccessDeniedError,
    BundleNotFoundError,
    BundleTooLargeError,
    IntegrityMismatchError,
    StorageUnavailableError,
)
from runner.platform import S3Reader, ScopedCredentials
from tests.support.scripted_server import Reply, scripted

CREDS = ScopedCredentials("AKIAFETCHTEST", "secret", "session")
CONTENT = bytes(range(256)) * 4096 * 3  # 3 MiB: several chunks
SHA = hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x")
    client.create_bucket(Bucket="fetch-bundles")
    client.put_object(Bucket="fetch-bundles", Key="b.zip", Body=CONTENT)
    yield url
    server.stop()


def _fetch(url: str, tmp_path: Path, uri: str = "s3://fetch-bundles/b.zip", sha: str = SHA,
           max_bytes: int = 10 * 1024 * 1024, *, max_attempts: int = 5) -> Path:
    deadline = Deadline.after(20)
    s3 = S3Reader(region="us-east-1", endpoint_url=url, max_attempts=max_attempts)
    return fetch(uri, sha, s3=s3, credentials=CREDS, dest_dir=tmp_path / "dl",
                 max_bytes=max_bytes, deadline=deadline).path


def test_a_bundle_is_streamed_to_a_file_and_verified(s3_url: str, tmp_path: Path) -> None:
    path = _fetch(s3_url, tmp_path)

    assert path.read_bytes() == CONTENT


def test_a_mismatch_leaves_no_file(s3_url: str, tmp_path: Path) -> None:
    with pytest.raises(IntegrityMismatchError, match=SHA):
        _fetch(s3_url, tmp_path, sha="00" * 32)

    assert list((tmp_path / "dl").iterdir()) == []


def test_a_missing_object_is_bundle_not_found(s3_url: str, tmp_path: Path) -> None:
    with pytest.raises(BundleNotFoundError, match=r"s3://fetch-bundles/nope\.zip"):
        _fetch(s3_url, tmp_path, uri="s3://fetch-bundles/nope.zip")
    with pytest.raises(BundleNotFoundError):
        _fetch(s3_url, tmp_path, uri="s3://no-such-bucket/b.zip")


def test_the_compressed_limit_stops_the_download(s3_url: str, tmp_path: Path) -> None:
    with pytest.raises(BundleTooLargeError, match="1000"):
        _fetch(s3_url, tmp_path, max_bytes=1000)

    assert list((tmp_path / "dl").iterdir()) == []


def _s3_error(status: int, code: str) -> Reply:
    xml = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>m</Message></Error>"
    return Reply(status, xml.encode(), {"Content-Type": "application/xml"})


def test_access_denied_is_platform_access_denied(tmp_path: Path) -> None:
    with scripted(_s3_error(403, "AccessDenied")) as server, \
            pytest.raises(AccessDeniedError, match="AccessDenied"):
        _fetch(server.url, tmp_path)


def test_throttling_and_5xx_are_retried(tmp_path: Path) -> None:
    ok = Reply(200, CONTENT, {"Content-Type": "application/zip"})
    with scripted(_s3_error(503, "SlowDown"), _s3_error(500, "InternalError"), ok) as server:
        assert _fetch(server.url, tmp_path).read_bytes() == CONTENT

    assert len(server.seen) == 3


def test_persistent_failure_is_storage_unavailable(tmp_path: Path) -> None:
    with scripted(_s3_error(503, "SlowDown")) as server, \
            pytest.raises(StorageUnavailableError) as caught:
        _fetch(server.url, tmp_path, max_attempts=2)

    assert caught.value.is_retryable
    assert len(server.seen) == 2  # the configured attempts, no more
    assert not (tmp_path / "dl").exists() or list((tmp_path / "dl").iterdir()) == []


def test_the_runner_never_uses_its_own_credentials(s3_url: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIARUNNEROWN")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "runner-secret")
    with scripted(Reply(200, CONTENT)) as server:
        _fetch(server.url, tmp_path)

    assert "AKIAFETCHTEST" in server.seen[0].headers["Authorization"]
    assert "AKIARUNNEROWN" not in str(server.seen[0].headers)
