"""Reading one object from S3 with a task's scoped credentials: one signed, streaming GET.

The runner reads one kind of thing from S3, the task's bundle, with credentials minted for that
object alone. An SDK client would cost a cold task more than the rest of its steps together
(botocore's session, the S3 model and its endpoint rules loaded from JSON, the client class
built), so the GET is made here, over a urllib3 pool, signed with SigV4 (`runner.platform.sigv4`):

- Where (`locate`): with an endpoint URL (the local stack), path-style `{endpoint}/{bucket}/{key}`.
  Otherwise S3's regional endpoint: virtual-hosted `{bucket}.s3.{region}.amazonaws.com` when the
  bucket name is a DNS label, path-style `s3.{region}.amazonaws.com/{bucket}` when it is not
  (a dotted name would not match the certificate's wildcard); `amazonaws.com.cn` in `cn-` regions.
- Retries: throttling, 5xx, connection failures and timeouts are retried with exponential backoff
  and full jitter, up to the configured attempts and never past the deadline; then
  `ServiceUnavailable`.
- A bucket in another region: S3 answers 301 (or 307, or 400) and names the bucket's region in
  `x-amz-bucket-region`; the GET is signed for that region and sent again, once.
- Any other answer that is not a success is final: `S3Error`, with S3's code taken from its XML
  error document (read only then, and only its first 64 KiB).
- The body streams (`S3Object`): raw bytes in chunks, no content decoding (the pin is the hash of
  the stored object); `abort` wakes a read blocked on a slow S3 from another thread; a body that
  breaks midway raises `BrokenStream`, and the caller decides whether to start over.

Nothing here logs or puts in an exception the secret key, the session token or the signature.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from urllib.parse import urlsplit

import urllib3
from urllib3.connectionpool import HTTPConnectionPool

from runner.deadline import Deadline
from runner.platform._http import RETRYABLE_STATUSES, ServiceUnavailable, backoff
from runner.platform.minter import ScopedCredentials
from runner.platform.sigv4 import encode_key, sign
from runner.steps import NEVER, Cancellation

__all__ = ["BrokenStream", "Location", "S3Error", "S3Object", "S3Reader", "locate"]

#: How much of an error answer is read for S3's code.
_ERROR_BODY_LIMIT = 64 * 1024
_CONNECT_TIMEOUT = 5.0
#: Bounds each read of the socket, not the whole body.
_READ_TIMEOUT = 30.0
#: Statuses with which S3 says the bucket lives in another region.
_MOVED = frozenset({301, 307, 400})
#: S3's codes for a transient problem that come with a 4xx status.
_TRANSIENT_CODES = frozenset({"RequestTimeout", "SlowDown"})
#: A bucket name usable as a DNS label (S3's rule for virtual-hosted addressing).
_DNS_LABEL = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class S3Error(Exception):
    """An error answer from S3: its status, S3's code, and the bucket's region when S3 named it
    (the message never holds more than the status and the code)."""

    def __init__(self, status: int, code: str = "", region: str = "") -> None:
        super().__init__(f"HTTP {status} {code}".rstrip())
        self.status = status
        self.code = code
        self.region = region

    @classmethod
    def parse(cls, status: int, headers: Mapping[str, str], body: bytes) -> S3Error:
        """The error in an answer of S3's: the code from its XML error document, the region
        from `x-amz-bucket-region` or else the document."""
        fields = _error_fields(body)
        region = headers.get("x-amz-bucket-region") or fields.get("Region", "")
        return cls(status, fields.get("Code", ""), region)

    @property
    def transient(self) -> bool:
        """Worth another attempt: S3 is throttling or failing, not refusing."""
        return self.status in RETRYABLE_STATUSES or self.code in _TRANSIENT_CODES


class BrokenStream(Exception):  # noqa: N818 - the caller maps it to its own error
    """The body stopped before its end: the connection broke, or a read timed out."""


@dataclass(frozen=True)
class Location:
    """Where a GET goes: the server, and the path as sent and signed (encoded once)."""

    scheme: str
    host: str
    port: int | None
    path: str

    @property
    def host_header(self) -> str:
        """The Host header, as signed: the port only when it is not the scheme's default."""
        default = self.port is None or self.port == _DEFAULT_PORTS.get(self.scheme)
        return self._host if default else f"{self._host}:{self.port}"

    @property
    def url(self) -> str:
        """For messages: nothing secret is in it (the credentials go in headers)."""
        port = "" if self.port is None else f":{self.port}"
        return f"{self.scheme}://{self._host}{port}{self.path}"

    @property
    def _host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address


def locate(bucket: str, key: str, *, region: str, endpoint_url: str = "") -> Location:
    """The URL of `key` in `bucket`: on `endpoint_url` when given, else on S3 in `region`."""
    if endpoint_url:
        parts = urlsplit(endpoint_url)
        return Location(parts.scheme, parts.hostname or "", parts.port,
                        f"{parts.path.rstrip('/')}/{encode_key(bucket)}/{encode_key(key)}")
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    if _DNS_LABEL.fullmatch(bucket):
        return Location("https", f"{bucket}.s3.{region}.{domain}", None, f"/{encode_key(key)}")
    return Location("https", f"s3.{region}.{domain}", None,
                    f"/{encode_key(bucket)}/{encode_key(key)}")


class S3Object:
    """An object's body as it streams in. Leaving the `with` block lets go of its connection:
    back to the pool when the body was read to its end, closed when it was not."""

    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self._response = response
        #: The size S3 declared, when it did.
        self.length = _declared_length(response)

    def read(self, size: int) -> bytes:
        """Up to `size` bytes as stored; empty at the end."""
        try:
            return self._response.read(size, decode_content=False)
        except urllib3.exceptions.HTTPError as e:
            raise BrokenStream(f"{type(e).__name__}: {e}") from e

    def abort(self) -> None:
        """Wake a thread blocked in `read` by shutting the socket under it (urllib3's
        `shutdown`, made for this); for another thread, harmless once the body has ended."""
        with contextlib.suppress(OSError, ValueError, RuntimeError):  # closed, or released
            self._response.shutdown()

    def close(self) -> None:
        """Let go of the connection (see the class docstring)."""
        _let_go(self._response)

    def __enter__(self) -> S3Object:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


class S3Reader:
    """Reads objects from S3 (or the local stack's) over one connection pool. It lives as long
    as the execution environment; the credentials are each task's, passed with each read."""

    def __init__(self, *, region: str, endpoint_url: str = "", max_attempts: int = 5,
                 pool: urllib3.PoolManager | None = None) -> None:
        self._region = region
        self._endpoint_url = endpoint_url
        self._max_attempts = max_attempts  # per request, the first included
        self._pool = pool or urllib3.PoolManager(retries=False)

    def __repr__(self) -> str:
        return f"S3Reader(region={self._region!r}, endpoint_url={self._endpoint_url!r})"

    def open(self, bucket: str, key: str, credentials: ScopedCredentials, deadline: Deadline,
             cancellation: Cancellation = NEVER) -> S3Object:
        """The object's body, streaming; or `S3Error` for S3's refusal, `ServiceUnavailable`
        once the retries or the time ran out. A cancellation stops it between attempts."""
        region, moved = self._region, False
        while True:
            where = locate(bucket, key, region=region, endpoint_url=self._endpoint_url)
            answer = self._get(where, region, credentials, deadline, cancellation)
            if isinstance(answer, urllib3.BaseHTTPResponse):
                return S3Object(answer)
            if moved or answer.status not in _MOVED or answer.region in ("", region):
                raise answer
            region, moved = answer.region, True  # sent again once, signed for its region

    def _get(self, where: Location, region: str, credentials: ScopedCredentials,
             deadline: Deadline, cancellation: Cancellation) -> urllib3.BaseHTTPResponse | S3Error:
        """A success, or a refusal that another attempt would not change."""
        origin = self._pool.connection_from_host(where.host, where.port, where.scheme)
        reason = "no attempt fitted in the time budget"
        attempt = 0
        while attempt < self._max_attempts and deadline.remaining() > 0:
            cancellation.check()
            attempt += 1
            answer = _attempt(origin, where, region, credentials, deadline)
            if isinstance(answer, urllib3.BaseHTTPResponse) or (
                    isinstance(answer, S3Error) and not answer.transient):
                return answer
            reason = f"{where.url}: {answer}"
            pause = backoff(attempt)
            if attempt >= self._max_attempts or pause >= deadline.remaining():
                break
            cancellation.sleep(pause)  # cut short by a cancellation
        raise ServiceUnavailable(reason, attempt)


def _attempt(origin: HTTPConnectionPool, where: Location, region: str,
             credentials: ScopedCredentials, deadline: Deadline,
             ) -> urllib3.BaseHTTPResponse | S3Error | str:
    """One signed GET: the response to stream, S3's refusal, or why it failed to answer."""
    headers = sign("GET", where.host_header, where.path, region=region, credentials=credentials,
                   now=datetime.now(UTC))
    remaining = deadline.remaining()
    try:
        # The pool's own `urlopen` takes the path as it is: a key's `.` and `..` segments are
        # S3's to keep, not to be resolved as a URL's would be.
        response = origin.urlopen(
            "GET", where.path, headers=headers, retries=False, redirect=False,
            assert_same_host=False, preload_content=False, decode_content=False,
            timeout=urllib3.Timeout(connect=min(_CONNECT_TIMEOUT, remaining),
                                    read=min(_READ_TIMEOUT, remaining)))
    except urllib3.exceptions.HTTPError as e:
        return f"{type(e).__name__}: {e}"
    if 200 <= response.status < 300:
        return response
    return _refusal(response)


def _refusal(response: urllib3.BaseHTTPResponse) -> S3Error:
    try:
        body = response.read(_ERROR_BODY_LIMIT, decode_content=False)
    except urllib3.exceptions.HTTPError:
        body = b""
    finally:
        _let_go(response)
    return S3Error.parse(response.status, response.headers, body)


def _error_fields(body: bytes) -> dict[str, str]:
    """The top-level fields of S3's XML error document; none when the body is not one."""
    # Imported here: only an error pays for the XML parser.
    from xml.etree import ElementTree  # noqa: PLC0415

    try:
        # Bounded input, and expat (2.4 and later) refuses runaway entity expansion.
        root = ElementTree.fromstring(body)  # noqa: S314
    except ElementTree.ParseError:
        return {}
    return {child.tag.rpartition("}")[2]: (child.text or "").strip() for child in root}


def _declared_length(response: urllib3.BaseHTTPResponse) -> int | None:
    try:
        return int(response.headers["Content-Length"])
    except (KeyError, ValueError):
        return None


def _let_go(response: urllib3.BaseHTTPResponse) -> None:
    """A body read to its end has already gone back to the pool; one that was not is closed
    (its unread bytes would spoil the connection), and its slot given back."""
    response.close()
    response.release_conn()
