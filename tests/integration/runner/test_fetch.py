"""Streaming the bundle from S3 over real HTTP: one pass hashing, limits, and S3's errors mapped.

S3 is moto in server mode (a real HTTP server); the local stack's moto also checks every
signature and policy, as S3 does. The failures moto cannot produce on demand (403, persistent
503, a stream cut midway, a bucket in another region) come from a scripted HTTP server
answering as S3 does.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import urllib3
from moto.server import ThreadedMotoServer

from devstack.stack import LocalStack
from runner.bundle.fetch import STREAM_ATTEMPTS, fetch
from runner.deadline import Deadline
from runner.errors import (
    AccessDeniedError,
    BundleNotFoundError,
    BundleTooLargeError,
    IntegrityMismatchError,
    StorageUnavailableError,
)
from runner.platform import S3Reader, ScopedCredentials
from tests.support.certificates import self_signed
from tests.support.scripted_server import Reply, ScriptedServer, scripted

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
           max_bytes: int = 10 * 1024 * 1024, *, max_attempts: int = 5,
           credentials: ScopedCredentials = CREDS, seconds: float = 20) -> Path:
    deadline = Deadline.after(seconds)
    s3 = S3Reader(region="us-east-1", endpoint_url=url, max_attempts=max_attempts)
    return fetch(uri, sha, s3=s3, credentials=credentials, dest_dir=tmp_path / "dl",
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


def _no_partial_file(tmp_path: Path) -> bool:
    return not (tmp_path / "dl").exists() or list((tmp_path / "dl").iterdir()) == []


AWKWARD_KEYS = [
    "with space/plus+equals=tilde~.zip",
    "ünïcödé/日本語/ß.zip",
    "sym!'()*;:@&$,?#[]%25.zip",
    "double//slash/trailing.zip",
    "percent%2Fnot-a-slash.zip",
]


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_keys_with_awkward_characters_are_read_with_a_signature_s3_accepts(
        local_stack: LocalStack, tmp_path: Path, key: str) -> None:
    # Put with botocore (the devstack's URIs refuse such keys): it encodes them as S3 expects.
    local_stack.access.client("s3").put_object(Bucket="udf-bundles", Key=f"awkward/{key}",
                                               Body=CONTENT)
    admin = local_stack.access.admin  # the stack's S3 checks the signature of every request

    path = _fetch(local_stack.access.s3_endpoint_url, tmp_path, f"s3://udf-bundles/awkward/{key}",
                  credentials=ScopedCredentials(admin.access_key_id, admin.secret_access_key, ""))

    assert path.read_bytes() == CONTENT


def test_a_wrong_secret_is_access_denied(local_stack: LocalStack, tmp_path: Path) -> None:
    uri = "s3://udf-bundles/tests/awkward/wrong-secret.zip"
    sha = local_stack.access.upload(uri, CONTENT)
    admin = local_stack.access.admin

    with pytest.raises(AccessDeniedError, match="SignatureDoesNotMatch"):
        _fetch(local_stack.access.s3_endpoint_url, tmp_path, uri, sha,
               credentials=ScopedCredentials(admin.access_key_id, "not-the-secret", ""))
    with pytest.raises(AccessDeniedError, match="InvalidAccessKeyId"):
        _fetch(local_stack.access.s3_endpoint_url, tmp_path, uri, sha,
               credentials=ScopedCredentials("AKIANOSUCHKEY0000000", "secret", ""))
    assert _no_partial_file(tmp_path)


def test_the_key_goes_on_the_wire_encoded_once(tmp_path: Path) -> None:
    with scripted(Reply(200, CONTENT)) as server:
        _fetch(server.url, tmp_path, "s3://fetch-bundles/a b/c+d=e~f/ü/x%2Fy.zip")

    assert server.seen[0].path == "/fetch-bundles/a%20b/c%2Bd%3De~f/%C3%BC/x%252Fy.zip"


def test_a_request_timeout_is_retried(tmp_path: Path) -> None:
    with scripted(_s3_error(400, "RequestTimeout"), Reply(200, CONTENT)) as server:
        assert _fetch(server.url, tmp_path).read_bytes() == CONTENT

    assert len(server.seen) == 2


def test_a_connection_dropped_before_an_answer_is_retried(tmp_path: Path) -> None:
    with scripted(Reply(drop=True), Reply(200, CONTENT)) as server:
        assert _fetch(server.url, tmp_path).read_bytes() == CONTENT

    assert len(server.seen) == 2


def test_retries_stop_at_the_deadline(tmp_path: Path) -> None:
    started = time.monotonic()
    with scripted(_s3_error(503, "SlowDown")) as server, \
            pytest.raises(StorageUnavailableError, match="503 SlowDown"):
        _fetch(server.url, tmp_path, max_attempts=10, seconds=0.5)

    assert time.monotonic() - started < 0.5 + 1.0  # no backoff starts that would pass it
    assert 1 <= len(server.seen) < 10


def test_a_refusal_is_not_retried(tmp_path: Path) -> None:
    with scripted(_s3_error(400, "InvalidRequest")) as server, \
            pytest.raises(StorageUnavailableError, match="HTTP 400 InvalidRequest"):
        _fetch(server.url, tmp_path)

    assert len(server.seen) == 1


def test_a_stream_cut_midway_starts_over(tmp_path: Path) -> None:
    cut = Reply(200, CONTENT, cut_after=len(CONTENT) // 2)
    with scripted(cut, Reply(200, CONTENT)) as server:
        assert _fetch(server.url, tmp_path).read_bytes() == CONTENT

    assert len(server.seen) == 2


def test_a_stream_that_keeps_breaking_is_storage_unavailable(tmp_path: Path) -> None:
    with scripted(Reply(200, CONTENT, cut_after=1000)) as server, \
            pytest.raises(StorageUnavailableError, match="kept failing") as caught:
        _fetch(server.url, tmp_path)

    assert caught.value.is_retryable
    assert len(server.seen) == STREAM_ATTEMPTS
    assert _no_partial_file(tmp_path)


def test_bytes_over_the_limit_stop_an_object_of_undeclared_size(tmp_path: Path) -> None:
    with scripted(Reply(200, CONTENT, chunked=True)) as server, \
            pytest.raises(BundleTooLargeError, match="over the 1048576-byte"):
        _fetch(server.url, tmp_path, max_bytes=1024 * 1024)

    assert _no_partial_file(tmp_path)


def test_the_stored_bytes_are_hashed_not_their_decoding(tmp_path: Path) -> None:
    stored = gzip.compress(CONTENT)
    sha = hashlib.sha256(stored).hexdigest()
    with scripted(Reply(200, stored, {"Content-Encoding": "gzip"})) as server:
        assert _fetch(server.url, tmp_path, sha=sha).read_bytes() == stored


def _moved(status: int, region: str, *, in_header: bool = True) -> Reply:
    code = "PermanentRedirect" if status == 301 else "AuthorizationHeaderMalformed"
    xml = f"<Error><Code>{code}</Code><Region>{region}</Region></Error>"
    return Reply(status, xml.encode(), {"x-amz-bucket-region": region} if in_header else {})


def _signed_for(server: ScriptedServer, request: int) -> str:
    return server.seen[request].headers["Authorization"].split("/")[2]


@pytest.mark.parametrize("moved", [_moved(301, "eu-west-1"), _moved(307, "eu-west-1"),
                                   _moved(400, "eu-west-1", in_header=False)])
def test_a_bucket_in_another_region_is_read_signed_for_it(tmp_path: Path, moved: Reply) -> None:
    with scripted(moved, Reply(200, CONTENT)) as server:
        assert _fetch(server.url, tmp_path).read_bytes() == CONTENT

    assert [_signed_for(server, 0), _signed_for(server, 1)] == ["us-east-1", "eu-west-1"]


def test_a_region_redirect_is_followed_once(tmp_path: Path) -> None:
    with scripted(_moved(301, "eu-west-1"), _moved(301, "ap-south-1")) as server, \
            pytest.raises(StorageUnavailableError, match="301 PermanentRedirect"):
        _fetch(server.url, tmp_path)

    assert len(server.seen) == 2


def test_no_secret_reaches_a_message_or_a_log(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    credentials = ScopedCredentials("AKIAFETCHTEST", "the-secret-key", "the-session-token")
    failures: list[BaseException] = []
    caplog.set_level(logging.DEBUG)
    for script in ([_s3_error(403, "AccessDenied")], [_s3_error(503, "SlowDown")],
                   [Reply(200, CONTENT, cut_after=10)], [_moved(301, "eu-west-1")]):
        with scripted(*script) as server, \
                pytest.raises((AccessDeniedError, StorageUnavailableError)) as caught:
            _fetch(server.url, tmp_path, max_attempts=2, credentials=credentials)
        failures.append(caught.value)
    with pytest.raises(StorageUnavailableError) as unreachable:
        _fetch("http://127.0.0.1:9", tmp_path, max_attempts=1, credentials=credentials)
    failures.append(unreachable.value)

    said = [*map(_chain, failures), caplog.text, repr(S3Reader(region="us-east-1"))]
    for secret in ("the-secret-key", "the-session-token", "Signature=", "Authorization"):
        assert not [text for text in said if secret in text], secret


def _chain(error: BaseException | None) -> str:
    """The message and repr of an exception and of every one it was raised from."""
    texts = []
    while error is not None:
        texts += [str(error), repr(error)]
        error = error.__cause__ or error.__context__
    return "\n".join(texts)


def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context with a certificate for 127.0.0.1 that no CA store trusts, and the
    certificate's file (to trust it on purpose)."""
    cert_file, key_file = self_signed(tmp_path, ca=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file


def test_an_endpoint_whose_certificate_is_not_trusted_is_refused(tmp_path: Path) -> None:
    context, _ = _self_signed(tmp_path)
    with scripted(Reply(200, CONTENT), tls=context) as server, \
            pytest.raises(StorageUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
        _fetch(server.url, tmp_path, max_attempts=1)

    assert server.seen == []


def test_a_bundle_is_read_over_tls(tmp_path: Path) -> None:
    context, cert_file = _self_signed(tmp_path)
    with scripted(Reply(200, CONTENT), tls=context) as server:
        s3 = S3Reader(region="us-east-1", endpoint_url=server.url,
                      pool=urllib3.PoolManager(retries=False, ca_certs=str(cert_file)))
        fetched = fetch("s3://fetch-bundles/b.zip", SHA, s3=s3, credentials=CREDS,
                        dest_dir=tmp_path / "dl", max_bytes=len(CONTENT),
                        deadline=Deadline.after(20))

    assert fetched.path.read_bytes() == CONTENT
    assert server.seen[0].headers["Host"] == server.url.removeprefix("https://")
