"""The Runtime API's HTTP side: one child's requests, routed to one method per endpoint.

The child's runtime (a Rust `bootstrap`, `awslambdaric`, the Node client, bash + curl) talks to
this server exactly as it would to Lambda (docs/runtime-api.md): it long-polls `next`, gets the
task's event with the standard headers, and posts a response or an error. Each endpoint asks the
state (`runner.runtime_api.state`) first and renders what it decided through `_render`, the one
writer of JSON replies; the state's refusals become HTTP statuses only here.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import socketserver
import sys
import threading
import uuid
from collections.abc import Callable
from contextlib import suppress
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO, cast
from urllib.parse import unquote

from runner.runtime_api._framing import Body, BodyReader, Truncated
from runner.runtime_api.function_error import parse_function_error, stream_error
from runner.runtime_api.state import (
    Hold,
    InvalidRequestId,
    InvalidResponseMode,
    InvocationState,
    NotAllowed,
    Oversized,
    PostedError,
    Refusal,
    Response,
    TooLate,
)

__all__ = [
    "API",
    "ERROR_BODY_TRAILER",
    "ERROR_TYPE_HEADER",
    "EXTENSION_NEXT_PATH",
    "EXTENSION_REGISTER_PATH",
    "INIT_ERROR_PATH",
    "NEXT_PATH",
    "RESPONSE_MODE_HEADER",
    "RuntimeApiServer",
]

_log = logging.getLogger(__name__)

API = "/2018-06-01"
NEXT_PATH = f"{API}/runtime/invocation/next"
INIT_ERROR_PATH = f"{API}/runtime/init/error"
_ANSWER_PATH = re.compile(rf"^{API}/runtime/invocation/(?P<id>[^/]+)/(?P<kind>response|error)$")
# The Extensions API, as far as a runtime uses it for itself: Rust's graceful-shutdown helper
# registers an internal extension (and panics if it cannot) only to be sent SIGTERM on shutdown,
# which the runner always sends. Its `event/next` is held, as the runtime's is after the answer.
EXTENSION_REGISTER_PATH = "/2020-01-01/extension/register"
EXTENSION_NEXT_PATH = "/2020-01-01/extension/event/next"
# Logs and Telemetry APIs are not offered; a client that subscribes gets Lambda's stub
# (docs/runtime-api.md#stubs).
_NOT_SUPPORTED = {
    "/2020-08-15/logs": "Logs",
    "/2022-07-01/telemetry": "Telemetry",
}

ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_TRAILER = "Lambda-Runtime-Function-Error-Body"
RESPONSE_MODE_HEADER = "Lambda-Runtime-Function-Response-Mode"


class _Rejected(Exception):  # noqa: N818 - a protocol reply, not a failure of the runner
    """A request answered with a JSON error reply. Made afresh for every request: a shared
    instance would grow its traceback with every raise."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def _rejection(refusal: Refusal) -> _Rejected:
    """The reply Lambda gives for each refusal of the state."""
    match refusal:
        case NotAllowed():
            return _Rejected(HTTPStatus.FORBIDDEN, "InvalidStateTransition", refusal.message)
        case InvalidRequestId():
            return _Rejected(HTTPStatus.BAD_REQUEST, "InvalidRequestID", "Invalid request ID")
        case TooLate():
            return _Rejected(HTTPStatus.GONE, "InvokeTimeout", "Invoke timeout")


def _too_large(limit: int) -> _Rejected:
    return _Rejected(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "RequestEntityTooLarge",
                     f"Exceeded maximum allowed payload size ({limit} bytes).")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "udf-runner"
    sys_version = ""
    # The native Node client and Rust write headers and body in separate segments
    # (docs/runtime-api.md#transport).
    disable_nagle_algorithm = True

    _reader: BodyReader | None = None

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

    # Routing

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        self._reader = None
        try:
            self._route(path, method)()
        except _Rejected as rejected:
            self._drain()
            self._render(rejected.status, {"errorMessage": rejected.message,
                                           "errorType": rejected.error_type})
        finally:
            self._state.publish()

    def _route(self, path: str, method: str) -> Callable[[], None]:
        """The endpoint for `path`; 404 for an unknown path, 405 for a wrong method."""
        route, allowed = self._lookup(path)
        if route is None:
            raise _Rejected(HTTPStatus.NOT_FOUND, "NotFound", f"No route for {path}")
        if method != allowed:
            raise _Rejected(HTTPStatus.METHOD_NOT_ALLOWED, "MethodNotAllowed",
                            f"{method} is not allowed on {path}; use {allowed}")
        return route

    def _lookup(self, path: str) -> tuple[Callable[[], None] | None, str]:
        fixed: dict[str, tuple[Callable[[], None], str]] = {
            NEXT_PATH: (self._next, "GET"),
            INIT_ERROR_PATH: (self._init_error, "POST"),
            EXTENSION_REGISTER_PATH: (self._register_extension, "POST"),
            EXTENSION_NEXT_PATH: (self._hold, "GET"),
        }
        if path in fixed:
            return fixed[path]
        if match := _ANSWER_PATH.match(path):
            request_id = unquote(match["id"])
            if match["kind"] == "response":
                return (lambda: self._response(request_id)), "POST"
            return (lambda: self._invocation_error(request_id)), "POST"
        if path in _NOT_SUPPORTED:
            return (lambda: self._not_supported(_NOT_SUPPORTED[path])), "PUT"
        return None, ""

    # Endpoints

    def _next(self) -> None:
        invocation = self._state.take_next()
        if isinstance(invocation, NotAllowed):
            raise _rejection(invocation)
        if isinstance(invocation, Hold):
            self._hold()
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
        self._check(self._state.check_answer(request_id))
        mode = self.headers.get(RESPONSE_MODE_HEADER)
        if mode is not None and mode != "streaming":
            self._check(self._state.record_answer(request_id, InvalidResponseMode(mode)))
            raise _Rejected(HTTPStatus.BAD_REQUEST, "InvalidFunctionResponseMode",
                            "Invalid function response mode")
        limit = self._server.response_limit
        reader = self._body_reader(keep=limit)
        body = self._read(reader.read)
        if body.overflowed:
            # Too large is the answer as soon as it is known, before the rest is drained: a
            # stream that never ends must end the invocation as too large, not at the deadline.
            size = body.size if reader.chunked else reader.length
            self._check(self._state.record_answer(request_id, Oversized(size, limit)))
            self._state.publish()
            self._read(reader.drain)
            raise _too_large(limit)
        self._check(self._state.record_answer(request_id, self._stream_error(body) or Response(
            bytes(body.data), self.headers.get("Content-Type", "application/octet-stream"))))
        self._accepted()

    def _invocation_error(self, request_id: str) -> None:
        self._check(self._state.check_answer(request_id))
        body = self._bounded_body()
        error = parse_function_error(bytes(body.data), self.headers.get(ERROR_TYPE_HEADER),
                                     "invocation")
        self._check(self._state.record_answer(request_id, PostedError("invocation", error)))
        self._accepted()

    def _init_error(self) -> None:
        body = self._bounded_body()
        error = parse_function_error(bytes(body.data), self.headers.get(ERROR_TYPE_HEADER), "init")
        self._check(self._state.record_init_error(error))
        self._accepted()

    def _hold(self) -> None:
        """Block the call until the child is stopped: it will never be answered."""
        self._server.mark_held(self.connection)
        self._state.hold()
        self.close_connection = True

    def _register_extension(self) -> None:
        """Register an extension, during init only (Lambda's rule): it gets an identifier and
        the function's name and version, and no events."""
        self._drain()
        self._check(self._state.register_extension())
        name = self._state.invocation.function_arn.rsplit(":", 1)[-1]
        self._render(HTTPStatus.OK, {"functionName": name, "functionVersion": "$LATEST",
                                     "handler": ""},
                     {"Lambda-Extension-Identifier": str(uuid.uuid4())})

    def _not_supported(self, api: str) -> None:
        self._drain()
        self._render(HTTPStatus.ACCEPTED, {"errorMessage": f"{api} API is not supported",
                                           "errorType": f"{api}.NotSupported"})

    # Bodies

    @staticmethod
    def _check(refusal: Refusal | None) -> None:
        if refusal is not None:
            raise _rejection(refusal)

    def _stream_error(self, body: Body) -> PostedError | None:
        """A stream that failed midway names its error in trailers
        (docs/runtime-api.md#streaming)."""
        error_type = body.trailers.get(ERROR_TYPE_HEADER.lower())
        if error_type is None:
            return None
        encoded = body.trailers.get(ERROR_BODY_TRAILER.lower(), "")
        return PostedError("invocation", stream_error(error_type, encoded))

    def _bounded_body(self) -> Body:
        limit = self._server.response_limit
        body = self._read(self._body_reader(keep=limit).drain)
        if body.overflowed:
            raise _too_large(limit)
        return body

    def _drain(self) -> None:
        """Consume an unread body so the connection stays usable for the next request."""
        if self.close_connection:
            return
        try:
            reader = self._reader if self._reader is not None else self._body_reader(keep=0)
            self._read(reader.drain)
        except _Rejected:
            self.close_connection = True

    def _body_reader(self, keep: int) -> BodyReader:
        """The request's body, to be read; the whole body is always read (or drained) before
        the reply, which a reset caused by unread data would otherwise lose."""
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        length = 0 if chunked else self._content_length()
        self._reader = BodyReader(cast(BinaryIO, self.rfile), chunked=chunked, length=length,
                                  keep=keep)
        return self._reader

    def _read(self, step: Callable[[], Body]) -> Body:
        try:
            return step()
        except Truncated:
            self.close_connection = True
            raise _Rejected(HTTPStatus.BAD_REQUEST, "TruncatedHTTPRequest",
                            "HTTP request detected as truncated") from None

    def _content_length(self) -> int:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise _Rejected(HTTPStatus.BAD_REQUEST, "InvalidContentLength",
                            "Content-Length is not a non-negative integer")
        return length

    # Replies

    def _accepted(self) -> None:
        self._render(HTTPStatus.ACCEPTED, {"status": "OK"})

    def _render(self, status: int, payload: dict[str, str],
                headers: dict[str, str] | None = None) -> None:
        """The one way every JSON reply is written (Go's encoder adds the trailing newline)."""
        self._send(status, (json.dumps(payload, separators=(",", ":")) + "\n").encode(),
                   "application/json", headers)

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
