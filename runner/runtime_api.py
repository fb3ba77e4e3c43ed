"""An in-process emulation of the Lambda Runtime API (2018-06-01): one child, one invocation.

The child's runtime (a Rust `bootstrap`, `awslambdaric`, the Node client, bash + curl) talks to
this server exactly as it would to Lambda: it long-polls `next`, gets the task's event with the
standard headers, and posts a response or an error. The rules of the protocol live in
`InvocationState`, a state machine that refuses every transition it does not allow; the HTTP
handler only parses requests and renders replies through `_render`.

References are to `../shared/reference/runtime-api-checklist.md` (item numbers).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import logging
import re
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO, cast
from urllib.parse import unquote

from runner.models import FunctionErrorBody

_log = logging.getLogger(__name__)

API = "/2018-06-01"
NEXT_PATH = f"{API}/runtime/invocation/next"
INIT_ERROR_PATH = f"{API}/runtime/init/error"
_ANSWER_PATH = re.compile(rf"^{API}/runtime/invocation/(?P<id>[^/]+)/(?P<kind>response|error)$")
# Logs and Telemetry APIs are not offered; a client that subscribes gets Lambda's stub (item 12).
_NOT_SUPPORTED = {
    "/2020-08-15/logs": "Logs",
    "/2022-07-01/telemetry": "Telemetry",
}

ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_TRAILER = "Lambda-Runtime-Function-Error-Body"
RESPONSE_MODE_HEADER = "Lambda-Runtime-Function-Response-Mode"
ERROR_CAUSE_CONTENT_TYPE = "application/vnd.aws.lambda.error.cause+json"
#: Longest error message kept from a non-JSON error body.
_RAW_ERROR_KEEP = 64 * 1024
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


@dataclass(frozen=True)
class Invocation:
    """The one invocation handed to the child, with the values of the `next` headers."""

    request_id: str
    event: bytes
    deadline_ms: int
    function_arn: str
    trace_id: str | None = None
    client_context: str | None = None
    cognito_identity: str | None = None


@dataclass(frozen=True)
class Response:
    """A complete response body (buffered, or a stream assembled)."""

    body: bytes
    content_type: str


@dataclass(frozen=True)
class PostedError:
    """What the runtime posted to `init/error` or `invocation/error` (or in stream trailers)."""

    phase: str  # "init" or "invocation"
    error: FunctionErrorBody


@dataclass(frozen=True)
class Oversized:
    """A response body over the limit: its declared size, or a stream's size when it crossed."""

    size: int
    limit: int


@dataclass(frozen=True)
class InvalidResponseMode:
    """A `Lambda-Runtime-Function-Response-Mode` other than `streaming`."""

    mode: str


@dataclass(frozen=True)
class LateAnswer:
    """An answer that arrived after the deadline; it counts as a timeout."""


Answer = Response | PostedError | Oversized | InvalidResponseMode | LateAnswer


class Phase(enum.Enum):
    """Where the one invocation stands."""

    INIT = "Init"  # started, has not asked for the event yet
    INVOKED = "Invoked"  # has the event, owes an answer
    ANSWERED = "Answered"  # answered; a further `next` is held until the child is stopped
    INIT_FAILED = "InitFailed"  # posted init/error; should exit
    CLOSED = "Closed"  # the runner has decided the outcome (exit, timeout); nothing more counts


class Refused(Exception):  # noqa: N818 - a protocol reply, not a failure of the runner
    """A request the protocol does not allow in this state; rendered as a JSON error reply."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def _transition_refused(current: Phase, target: str) -> Refused:
    return Refused(
        HTTPStatus.FORBIDDEN, "InvalidStateTransition",
        f"State transition from {current.value} to {target} failed for runtime. "
        "Error: State transition is not allowed",
    )


_INVALID_REQUEST_ID = Refused(HTTPStatus.BAD_REQUEST, "InvalidRequestID", "Invalid request ID")


@dataclass
class InvocationState:
    """The protocol for one invocation. Every method is called from a server thread."""

    invocation: Invocation
    deadline: float  # time.monotonic() value after which answers are late
    on_change: Callable[[], None]  # called by `publish`, outside the lock
    phase: Phase = Phase.INIT
    answer: Answer | None = None
    published: bool = False  # the answer is final for the driver (its reply has been written)
    next_at: float | None = None  # monotonic time the child took the event
    answered_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: threading.Event = field(default_factory=threading.Event)

    def take_next(self) -> Invocation | None:
        """The event, or None when the call must be held (the one invocation is over)."""
        with self._lock:
            if self.phase is Phase.INIT:
                self.phase = Phase.INVOKED
                self.next_at = time.monotonic()
                return self.invocation
            if self.phase in (Phase.ANSWERED, Phase.CLOSED):
                return None
            raise _transition_refused(self.phase, "Ready")

    def hold(self) -> None:
        """Block a `next` call until the child is stopped: one invocation per task."""
        self._closed.wait()

    def check_answer(self, request_id: str) -> None:
        """Refuse an answer for the wrong id or in the wrong state, before its body is used."""
        with self._lock:
            self._check_answer(request_id)

    def record_answer(self, request_id: str, answer: Answer) -> None:
        """Record the runtime's answer; a late one is recorded as `LateAnswer` and refused."""
        with self._lock:
            self._check_answer(request_id)
            now = time.monotonic()
            late = now > self.deadline
            self.answer = LateAnswer() if late else answer
            self.answered_at = now
            self.phase = Phase.CLOSED if late else Phase.ANSWERED
        if late:
            raise Refused(HTTPStatus.GONE, "InvokeTimeout", "Invoke timeout")

    def record_init_error(self, error: FunctionErrorBody) -> None:
        """Record `init/error`, which is only allowed before the first `next` (item 9)."""
        with self._lock:
            if self.phase is not Phase.INIT:
                raise _transition_refused(self.phase, "InitError")
            self.phase = Phase.INIT_FAILED
            self.answer = PostedError("init", error)
            self.answered_at = time.monotonic()

    def publish(self) -> None:
        """Let the driver act on what has been recorded (called once the reply is written: a
        client stopped before its 202 arrives would log a spurious error)."""
        with self._lock:
            self.published = self.answer is not None
        self.on_change()

    def close(self) -> Answer | None:
        """Freeze the outcome: nothing the child sends from now on counts. Held `next` calls
        stay held, so the child is stopped while it waits, not woken to an empty reply."""
        with self._lock:
            self.phase = Phase.CLOSED
            return self.answer

    def release(self) -> None:
        """End every held `next` call (the child is gone, or the server is stopping)."""
        self._closed.set()

    def _check_answer(self, request_id: str) -> None:
        if request_id != self.invocation.request_id or self.phase is Phase.INIT:
            raise _INVALID_REQUEST_ID
        if self.phase is not Phase.INVOKED:
            raise _transition_refused(self.phase, "ResponseSent")


def parse_function_error(body: bytes, header_type: str | None, phase: str) -> FunctionErrorBody:
    """Normalise an error body, whichever client sent it (items 7, 8, 20, 52).

    The Python client sends `stackTrace` and no type header, the Node client `trace` and no
    header on invocation errors, Rust the header; bash bootstraps send whatever they like.
    """
    fallback_type = header_type or ("Runtime.Unknown" if phase == "init" else "Function.Unknown")
    try:
        data = json.loads(body)
    # ValueError, not only JSONDecodeError: an integer over 4300 digits is refused with it.
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        text = body[:_RAW_ERROR_KEEP].decode("utf-8", "replace")
        return FunctionErrorBody(error_type=fallback_type, error_message=text)
    error_type = data.get("errorType")
    message = data.get("errorMessage")
    trace = data.get("stackTrace", data.get("trace"))
    return FunctionErrorBody(
        error_type=_text(error_type) if isinstance(error_type, str) and error_type
        else fallback_type,
        error_message=_text(message),
        stack_trace=_trace_lines(trace),
    )


def _text(value: Any) -> str:
    """A field as text any UTF-8 output can hold: JSON may carry lone surrogates ("\\ud800")."""
    text = value if isinstance(value, str) else "" if value is None else json.dumps(value)
    return text.encode("utf-8", "replace").decode("utf-8")


def _trace_lines(trace: Any) -> list[str]:
    if isinstance(trace, str):
        return _text(trace).splitlines()
    if isinstance(trace, list):
        return [_text(item) for item in trace]
    return []


class _Truncated(Exception):  # noqa: N818 - internal signal for a body cut short
    """The request body ended before its declared length or final chunk."""


@dataclass
class _Body:
    """A request body as it is read: every byte counted, at most `keep` of them kept."""

    keep: int
    #: Told the size read so far, once, as soon as more than `keep` bytes have arrived.
    on_overflow: Callable[[int], None] | None = None
    data: bytearray = field(default_factory=bytearray)
    size: int = 0
    trailers: dict[str, str] = field(default_factory=dict)

    def take(self, chunk: bytes) -> None:
        before = self.size
        self.size += len(chunk)
        room = self.keep - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        if self.on_overflow is not None and before <= self.keep < self.size:
            self.on_overflow(self.size)


def _read_exact(rfile: BinaryIO, length: int, body: _Body) -> None:
    remaining = length
    while remaining:
        chunk = rfile.read(min(remaining, 1 << 20))
        if not chunk:
            raise _Truncated
        body.take(chunk)
        remaining -= len(chunk)


def _read_chunked(rfile: BinaryIO, body: _Body) -> None:
    while True:
        line = rfile.readline(1024)
        if not line.endswith(b"\n"):
            raise _Truncated
        size_field = line.split(b";", 1)[0].strip()
        # int(x, 16) alone would take "-5", "+5", "0x5" and "5_0"; a negative size made
        # `read` raise ValueError, which dropped the connection without a reply.
        if not _CHUNK_SIZE.fullmatch(size_field):
            raise _Truncated
        size = int(size_field, 16)
        if size == 0:
            break
        _read_exact(rfile, size, body)
        if rfile.readline(3).strip():
            raise _Truncated
    while True:
        line = rfile.readline(64 * 1024)
        if line in (b"\r\n", b"\n", b""):
            return
        name, _, value = line.decode("latin-1").partition(":")
        body.trailers[name.strip().lower()] = value.strip()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "udf-runner"
    sys_version = ""
    # The native Node client and Rust write headers and body in separate segments (item 43).
    disable_nagle_algorithm = True

    _body_read = False

    @property
    def _server(self) -> RuntimeApiServer:
        return cast(RuntimeApiServer, self.server)

    @property
    def _state(self) -> InvocationState:
        return self._server.state

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged: the child's own output is the record of what it did."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Malformed requests and unknown methods get the same JSON shape as everything else."""
        self.close_connection = True
        status = HTTPStatus(code)
        self._render(code, {"errorMessage": message or status.phrase,
                            "errorType": status.phrase.replace(" ", "")})

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        self._body_read = False
        try:
            self._route(path, method)()
        except Refused as refusal:
            self._drain()
            self._render(refusal.status, {"errorMessage": refusal.message,
                                          "errorType": refusal.error_type})
        finally:
            self._state.publish()

    def _drain(self) -> None:
        """Consume an unread body so the connection stays usable for the next request."""
        if self._body_read or self.close_connection:
            return
        try:
            self._read_body(keep=0)
        except Refused:
            self.close_connection = True

    def _route(self, path: str, method: str) -> Callable[[], None]:
        """The endpoint for `path`; 404 for an unknown path, 405 for a wrong method."""
        route, allowed = self._lookup(path)
        if route is None:
            raise Refused(HTTPStatus.NOT_FOUND, "NotFound", f"No route for {path}")
        if method != allowed:
            raise Refused(HTTPStatus.METHOD_NOT_ALLOWED, "MethodNotAllowed",
                          f"{method} is not allowed on {path}; use {allowed}")
        return route

    def _lookup(self, path: str) -> tuple[Callable[[], None] | None, str]:
        if path == NEXT_PATH:
            return self._next, "GET"
        if path == INIT_ERROR_PATH:
            return self._init_error, "POST"
        if match := _ANSWER_PATH.match(path):
            request_id = unquote(match["id"])
            if match["kind"] == "response":
                return (lambda: self._response(request_id)), "POST"
            return (lambda: self._invocation_error(request_id)), "POST"
        if path in _NOT_SUPPORTED:
            return self._not_supported, "PUT"
        return None, ""

    def _next(self) -> None:
        invocation = self._state.take_next()
        if invocation is None:
            self._server.mark_held(self.connection)
            self._state.hold()
            self.close_connection = True
            return
        headers = {
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": invocation.function_arn,
            "Lambda-Runtime-Trace-Id": invocation.trace_id,
            "Lambda-Runtime-Client-Context": invocation.client_context,
            "Lambda-Runtime-Cognito-Identity": invocation.cognito_identity,
        }
        self._send(HTTPStatus.OK, invocation.event, "application/json",
                   {k: v for k, v in headers.items() if v})

    def _response(self, request_id: str) -> None:
        self._state.check_answer(request_id)
        mode = self.headers.get(RESPONSE_MODE_HEADER)
        if mode is not None and mode != "streaming":
            self._state.record_answer(request_id, InvalidResponseMode(mode))
            raise Refused(HTTPStatus.BAD_REQUEST, "InvalidFunctionResponseMode",
                          "Invalid function response mode")
        limit = self._server.response_limit
        body = self._read_body(
            keep=limit, on_overflow=lambda size: self._oversized(request_id, size, limit))
        if body.size > limit:
            raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "RequestEntityTooLarge",
                          f"Exceeded maximum allowed payload size ({limit} bytes).")
        self._state.record_answer(request_id, self._stream_error(body) or Response(
            bytes(body.data), self.headers.get("Content-Type", "application/octet-stream")))
        self._accepted()

    def _oversized(self, request_id: str, size: int, limit: int) -> None:
        """Too large is the answer as soon as it is known, before the rest is drained: a stream
        that never ends must end the invocation as too large, not run on until the deadline."""
        total = size if self._chunked else self._content_length()
        self._state.record_answer(request_id, Oversized(total, limit))
        self._state.publish()

    def _stream_error(self, body: _Body) -> PostedError | None:
        """A stream that failed midway names its error in trailers (item 21)."""
        error_type = body.trailers.get(ERROR_TYPE_HEADER.lower())
        if error_type is None:
            return None
        try:
            raw = base64.b64decode(body.trailers.get(ERROR_BODY_TRAILER.lower(), ""))
        except (binascii.Error, ValueError):
            raw = b""
        return PostedError("invocation", parse_function_error(raw, error_type, "invocation"))

    def _invocation_error(self, request_id: str) -> None:
        self._state.check_answer(request_id)
        body = self._bounded_body()
        error = parse_function_error(bytes(body.data), self.headers.get(ERROR_TYPE_HEADER),
                                     "invocation")
        self._state.record_answer(request_id, PostedError("invocation", error))
        self._accepted()

    def _init_error(self) -> None:
        body = self._bounded_body()
        error = parse_function_error(bytes(body.data), self.headers.get(ERROR_TYPE_HEADER), "init")
        self._state.record_init_error(error)
        self._accepted()

    def _not_supported(self) -> None:
        self._drain()
        api = _NOT_SUPPORTED[self.path.split("?", 1)[0]]
        self._render(HTTPStatus.ACCEPTED, {"errorMessage": f"{api} API is not supported",
                                           "errorType": f"{api}.NotSupported"})

    def _bounded_body(self) -> _Body:
        limit = self._server.response_limit
        body = self._read_body(keep=limit)
        if body.size > limit:
            raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "RequestEntityTooLarge",
                          f"Exceeded maximum allowed payload size ({limit} bytes).")
        return body

    @property
    def _chunked(self) -> bool:
        return "chunked" in self.headers.get("Transfer-Encoding", "").lower()

    def _read_body(self, keep: int,
                   on_overflow: Callable[[int], None] | None = None) -> _Body:
        """Read the whole body, keeping at most `keep` bytes, so the reply is never lost to a
        reset caused by unread data (a body over the limit is drained, not left on the socket)."""
        body = _Body(keep, on_overflow)
        self._body_read = True
        try:
            if self._chunked:
                _read_chunked(cast(BinaryIO, self.rfile), body)
            else:
                _read_exact(cast(BinaryIO, self.rfile), self._content_length(), body)
        except _Truncated:
            self.close_connection = True
            raise Refused(HTTPStatus.BAD_REQUEST, "TruncatedHTTPRequest",
                          "HTTP request detected as truncated") from None
        except Refused:
            self.close_connection = True  # refused by `on_overflow` with the body half read
            raise
        return body

    def _content_length(self) -> int:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise Refused(HTTPStatus.BAD_REQUEST, "InvalidContentLength",
                          "Content-Length is not a non-negative integer")
        return length

    def _accepted(self) -> None:
        self._render(HTTPStatus.ACCEPTED, {"status": "OK"})

    def _render(self, status: int, payload: dict[str, str]) -> None:
        """The one way every JSON reply is written (Go's encoder adds the trailing newline)."""
        self._send(status, (json.dumps(payload, separators=(",", ":")) + "\n").encode(),
                   "application/json")

    def _send(self, status: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class RuntimeApiServer(ThreadingHTTPServer):
    """The Runtime API for one child, on 127.0.0.1 and an ephemeral port."""

    daemon_threads = True
    block_on_close = True  # server_close() joins every request thread: none outlives the attempt

    def __init__(self, state: InvocationState, *, response_limit: int) -> None:
        self.state = state
        self.response_limit = response_limit
        self._connections: set[socket.socket] = set()
        self._held: set[socket.socket] = set()
        self._connections_lock = threading.Condition()
        self._acceptor: threading.Thread | None = None
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), a DNS round trip per attempt.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    @property
    def address(self) -> str:
        """`host:port`, the value of `AWS_LAMBDA_RUNTIME_API`."""
        return f"127.0.0.1:{self.server_port}"

    def start(self) -> None:
        """Accept connections in a background thread, one thread per connection."""
        self._acceptor = threading.Thread(target=self._accept, name="runtime-api", daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        # A blocking accept loop rather than serve_forever: stopping must not wait for a poll tick.
        while True:
            try:
                conn, peer = self.socket.accept()
            except OSError:
                return  # stop() shut the listening socket down
            with self._connections_lock:
                self._connections.add(conn)
            self.process_request(conn, peer)

    def stop(self) -> None:
        """Stop accepting, cut every connection (held `next` calls included), join all threads."""
        self.state.close()
        self.state.release()
        _shutdown_quietly(self.socket)
        if self._acceptor is not None:
            self._acceptor.join()
        with self._connections_lock:
            for conn in self._connections:
                _shutdown_quietly(conn)
        self.server_close()

    def mark_held(self, conn: socket.socket) -> None:
        """`conn` is parked in a held `next`: it will not send anything more."""
        with self._connections_lock:
            self._held.add(conn)
            self._connections_lock.notify_all()

    def settle(self, timeout: float) -> None:
        """Wait until every connection is closed or held, i.e. nothing sent is left unread."""
        with self._connections_lock:
            self._connections_lock.wait_for(lambda: self._connections <= self._held, timeout)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A child killed mid-request resets its connection; that is expected, not an error."""
        error = sys.exception()
        if not isinstance(error, OSError):
            _log.error("Runtime API request failed", exc_info=error)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
            self._held.discard(request)
            self._connections_lock.notify_all()
        super().shutdown_request(request)


def _shutdown_quietly(conn: socket.socket) -> None:
    with suppress(OSError):  # the peer is already gone
        conn.shutdown(socket.SHUT_RDWR)
