"""The Runtime API's HTTP side: one child's requests, routed to one method per endpoint.

The child's runtime (a Rust `bootstrap`, `awslambdaric`, the Node client, bash + curl) talks to
this server exactly as it would to Lambda (docs/runtime-api.md): it long-polls `next`, gets the
task's event with the standard headers, and posts a response or an error. Each endpoint asks the
state (`runner.runtime_api.state`) first and renders what it decided through `_render`, the one
writer of JSON replies; the state's refusals become HTTP statuses only here. The HTTP itself
(h11, and the bounds on what a client controls) is `runner.runtime_api._http`.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import socket
import threading
import uuid
from collections.abc import Callable
from contextlib import suppress
from http import HTTPStatus
from urllib.parse import unquote

from runner.runtime_api import peers
from runner.runtime_api._http import DRAIN_BYTES, Body, HttpConnection, Rejected, Request
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
    "CONNECTION_THREADS",
    "ERROR_BODY_TRAILER",
    "ERROR_TYPE_HEADER",
    "EXTENSION_NEXT_PATH",
    "EXTENSION_REGISTER_PATH",
    "INIT_ERROR_PATH",
    "MAX_CONNECTIONS",
    "NEXT_PATH",
    "RESPONSE_MODE_HEADER",
    "RuntimeApiServer",
]

_log = logging.getLogger(__name__)

API = "/2018-06-01"
NEXT_PATH = f"{API}/runtime/invocation/next"
INIT_ERROR_PATH = f"{API}/runtime/init/error"
_ANSWER_PATH = re.compile(rf"^{API}/runtime/invocation/(?P<id>[^/]+)/(?P<kind>response|error)$")
# Logs and Telemetry APIs are not offered; a client that subscribes gets Lambda's stub
# (docs/runtime-api.md#stubs).
_NOT_SUPPORTED = {
    "/2020-08-15/logs": "Logs",
    "/2022-07-01/telemetry": "Telemetry",
}

ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_TRAILER = "Lambda-Runtime-Function-Error-Body"
RESPONSE_MODE_HEADER = "Lambda-Runtime-Function-Response-Mode"
# The Extensions API, as far as a runtime uses it for itself: Rust's graceful-shutdown helper
# registers an internal extension (and panics if it cannot) only to be sent SIGTERM on shutdown,
# which the runner always sends. Its `event/next` is held, as the runtime's is after the answer.
EXTENSION_REGISTER_PATH = "/2020-01-01/extension/register"
EXTENSION_NEXT_PATH = "/2020-01-01/extension/event/next"


#: Threads serving connections at once (an official client uses one or two: the Node client,
#: one for `next`, one for streamed answers).
CONNECTION_THREADS = 8
#: Connections open at once, served or waiting for a serving thread; more are refused.
MAX_CONNECTIONS = 64
#: Methods routed (to 404 or 405 when wrong); any other is not implemented.
_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"})


def _rejection(refusal: Refusal) -> Rejected:
    """The reply Lambda gives for each refusal of the state."""
    match refusal:
        case NotAllowed():
            return Rejected(HTTPStatus.FORBIDDEN, "InvalidStateTransition", refusal.message)
        case InvalidRequestId():
            return Rejected(HTTPStatus.BAD_REQUEST, "InvalidRequestID", "Invalid request ID")
        case TooLate():
            return Rejected(HTTPStatus.GONE, "InvokeTimeout", "Invoke timeout")


def _too_large(limit: int) -> Rejected:
    return Rejected(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "RequestEntityTooLarge",
                    f"Exceeded maximum allowed payload size ({limit} bytes).")


def _check(refusal: Refusal | None) -> None:
    if refusal is not None:
        raise _rejection(refusal)


class _Client:
    """One connection of the child: its requests, each routed to one endpoint method."""

    def __init__(self, server: RuntimeApiServer, http: HttpConnection) -> None:
        self._server = server
        self._state = server.state
        self._http = http
        self._request = Request("", "", {}, 0)
        self._keep_alive = True

    def serve(self) -> None:
        """Serve requests until the client closes, a reply ends the connection, or a `next`
        is held until the server stops."""
        while self._keep_alive:
            try:
                request = self._http.next_request()
            except Rejected as rejected:
                self._render_error(rejected)
                break
            if request is None:
                return
            self._request = request
            self._dispatch()
        # Enough for a body up to the limit that was refused before it was read.
        self._http.linger(self._server.response_limit + DRAIN_BYTES)

    def refuse(self, rejected: Rejected) -> None:
        """Reply to a connection that is not served at all, and end it without waiting for
        it (this runs in the accept loop)."""
        self._keep_alive = False
        self._render_error(rejected)
        self._http.linger(DRAIN_BYTES, seconds=0)

    def _dispatch(self) -> None:
        try:
            self._route()()
        except Rejected as rejected:
            self._refuse(rejected)
        finally:
            self._state.publish()

    def _route(self) -> Callable[[], None]:
        """The endpoint for the request; 404 for an unknown path, 405 for a wrong method."""
        method, path = self._request.method, self._request.path
        if method not in _METHODS:
            raise Rejected(HTTPStatus.NOT_IMPLEMENTED, "NotImplemented",
                           f"{method} is not implemented")
        route, allowed = self._lookup(path)
        if route is None:
            raise Rejected(HTTPStatus.NOT_FOUND, "NotFound", f"No route for {path}")
        if method != allowed:
            raise Rejected(HTTPStatus.METHOD_NOT_ALLOWED, "MethodNotAllowed",
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
        self._drain()
        headers = {
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": invocation.function_arn,
            "Lambda-Runtime-Trace-Id": invocation.trace_id,
            "Lambda-Runtime-Client-Context": invocation.client_context,
            "Lambda-Runtime-Cognito-Identity": invocation.cognito_identity,
        }
        self._send(HTTPStatus.OK, invocation.event, "application/json",
                   [(k, v) for k, v in headers.items() if v])

    def _response(self, request_id: str) -> None:
        _check(self._state.check_answer(request_id))
        mode = self._header(RESPONSE_MODE_HEADER)
        if mode is not None and mode != "streaming":
            _check(self._state.record_answer(request_id, InvalidResponseMode(mode)))
            raise Rejected(HTTPStatus.BAD_REQUEST, "InvalidFunctionResponseMode",
                           "Invalid function response mode")
        limit = self._server.response_limit
        body = self._body(limit)
        if body.overflowed:
            # Too large is the answer as soon as it is known, before any more is read: a stream
            # that never ends must end the invocation as too large, not at the deadline.
            _check(self._state.record_answer(request_id, Oversized(body.size, limit)))
            self._state.publish()
            raise _too_large(limit)
        _check(self._state.record_answer(request_id, self._stream_error(body) or Response(
            bytes(body.data), self._header("Content-Type") or "application/octet-stream")))
        self._accepted()

    def _invocation_error(self, request_id: str) -> None:
        _check(self._state.check_answer(request_id))
        error = parse_function_error(self._error_body(), self._header(ERROR_TYPE_HEADER),
                                     "invocation")
        _check(self._state.record_answer(request_id, PostedError("invocation", error)))
        self._accepted()

    def _init_error(self) -> None:
        error = parse_function_error(self._error_body(), self._header(ERROR_TYPE_HEADER), "init")
        _check(self._state.record_init_error(error))
        self._accepted()

    def _not_supported(self, api: str) -> None:
        self._drain()
        self._render(HTTPStatus.ACCEPTED, {"errorMessage": f"{api} API is not supported",
                                           "errorType": f"{api}.NotSupported"})

    # Bodies

    def _header(self, name: str) -> str | None:
        return self._request.headers.get(name.lower())

    def _body(self, limit: int) -> Body:
        """The request's body, read until it ends or first crosses `limit`. A declared length
        over the limit is known at once: its size is the declared one, and nothing is read."""
        declared = self._request.content_length
        if declared is not None and declared > limit:
            body = Body(keep=limit, size=declared)
        else:
            body = self._http.read_body(Body(keep=limit))
        # The rest of a body over the limit is never read: the connection ends with the reply.
        self._keep_alive = self._keep_alive and not body.overflowed
        return body

    def _stream_error(self, body: Body) -> PostedError | None:
        """A stream that failed midway names its error in trailers
        (docs/runtime-api.md#streaming)."""
        error_type = body.trailers.get(ERROR_TYPE_HEADER.lower())
        if error_type is None:
            return None
        encoded = body.trailers.get(ERROR_BODY_TRAILER.lower(), "")
        return PostedError("invocation", stream_error(error_type, encoded))

    def _error_body(self) -> bytes:
        limit = self._server.response_limit
        body = self._body(limit)
        if body.overflowed:
            raise _too_large(limit)
        return bytes(body.data)

    def _drain(self) -> None:
        """Read what is left of the body (a little of it) so that the connection can carry the
        next request; a longer body ends the connection after the reply."""
        if self._keep_alive and self._http.reading_body and not self._http.drain():
            self._keep_alive = False

    # Replies

    def _refuse(self, rejected: Rejected) -> None:
        with suppress(Rejected):  # a body that breaks its framing ends the connection
            self._drain()
        self._render_error(rejected)

    def _hold(self) -> None:
        """Block the call until the child is stopped: it will never be answered."""
        self._server.mark_held(self._http.sock)
        self._state.hold()
        self._keep_alive = False

    def _register_extension(self) -> None:
        """Register an extension, during init only (Lambda's rule): it gets an identifier and
        the function's name and version, and no events."""
        self._drain()
        _check(self._state.register_extension())
        name = self._state.invocation.function_arn.rsplit(":", 1)[-1]
        self._render(HTTPStatus.OK, {"functionName": name, "functionVersion": "$LATEST",
                                     "handler": ""},
                     [("Lambda-Extension-Identifier", str(uuid.uuid4()))])

    def _render_error(self, rejected: Rejected) -> None:
        self._render(rejected.status, {"errorMessage": rejected.message,
                                       "errorType": rejected.error_type})

    def _accepted(self) -> None:
        self._render(HTTPStatus.ACCEPTED, {"status": "OK"})

    def _render(self, status: int, payload: dict[str, str],
                headers: list[tuple[str, str]] | None = None) -> None:
        """The one way every JSON reply is written (Go's encoder adds the trailing newline)."""
        self._send(status, (json.dumps(payload, separators=(",", ":")) + "\n").encode(),
                   "application/json", headers)

    def _send(self, status: int, body: bytes, content_type: str,
              headers: list[tuple[str, str]] | None = None) -> None:
        self._keep_alive = self._http.send(status, body,
                                           [("Content-Type", content_type), *(headers or [])],
                                           close=not self._keep_alive)


class _Crew:
    """The threads a server runs on: one accepting, `CONNECTION_THREADS` serving connections.

    Started once and lent to one server at a time (`_Crews`): starting and joining nine threads
    for every invocation cost about 3 ms. A crew holds nothing of a server between loans: each
    thread takes its server with its work (a listener to accept on, a connection to serve) and
    drops it when done, and a server gives its crew back only once its listener is shut and
    every connection it accepted is closed.
    """

    def __init__(self) -> None:
        self._listeners: queue.SimpleQueue[RuntimeApiServer] = queue.SimpleQueue()
        self.connections: queue.SimpleQueue[tuple[RuntimeApiServer, socket.socket]] = (
            queue.SimpleQueue())
        threads = [threading.Thread(target=self._serve_connections, name=f"runtime-api-{n}",
                                    daemon=True) for n in range(CONNECTION_THREADS)]
        threads.append(threading.Thread(target=self._accept_for_servers, name="runtime-api",
                                        daemon=True))
        for thread in threads:
            thread.start()
        self.idents = frozenset(thread.ident for thread in threads)

    def accept_for(self, server: RuntimeApiServer) -> None:
        """Accept `server`'s connections until its listener is shut."""
        self._listeners.put(server)

    def _accept_for_servers(self) -> None:
        while True:
            server = self._listeners.get()
            server._accept()
            del server  # nothing of it kept while idle

    def _serve_connections(self) -> None:
        while True:
            server, conn = self.connections.get()
            server._serve(conn)
            del server, conn


class _Crews:
    """Idle crews, one taken by each running server (one at a time in a runner; more where
    servers run side by side, as in tests)."""

    def __init__(self) -> None:
        self._idle: list[_Crew] = []
        self._lock = threading.Lock()

    def take(self) -> _Crew:
        with self._lock:
            return self._idle.pop() if self._idle else _Crew()

    def give_back(self, crew: _Crew) -> None:
        with self._lock:
            self._idle.append(crew)

    def forget(self) -> None:
        """In a forked child: the crews' threads are the parent's, not running here."""
        self._idle = []
        self._lock = threading.Lock()


_CREWS = _Crews()
os.register_at_fork(after_in_child=_CREWS.forget)


class RuntimeApiServer:
    """The Runtime API for one child, on 127.0.0.1 and an ephemeral port.

    Every thread it uses exists before the child starts: the child's seccomp filter names the
    runner's threads that exist when it starts (runner.containment.seccomp), so none started
    later could be signalled by the bundle. `start()` takes a crew of threads (`_Crew`): one
    accepts (blocking, so stopping waits for no poll tick), `CONNECTION_THREADS` serve
    connections, and up to `MAX_CONNECTIONS` wait their turn; more are refused. With `peer_uid`,
    only connections from a socket of that uid are served (`peers`): not another runner's
    bundle on the same machine. Each server has its own listener, state and connections;
    `stop()` ends them all before the crew serves another.
    """

    def __init__(self, state: InvocationState, *, response_limit: int,
                 peer_uid: int | None = None, max_connections: int = MAX_CONNECTIONS) -> None:
        self.state = state
        self.response_limit = response_limit
        self._peer_uid = peer_uid
        self._max_connections = max_connections
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._connections: set[socket.socket] = set()  # served or waiting in the queue
        self._held: set[socket.socket] = set()
        self._connections_lock = threading.Condition()
        self._crew: _Crew | None = None
        self._accepted_all = threading.Event()

    @property
    def address(self) -> str:
        """`host:port`, the value of `AWS_LAMBDA_RUNTIME_API`."""
        return f"127.0.0.1:{self._listener.getsockname()[1]}"

    def start(self) -> None:
        """Take a crew: its acceptor starts accepting on this server's listener."""
        self._crew = _CREWS.take()
        self._crew.accept_for(self)

    def _accept(self) -> None:
        try:
            while (conn := self._accepted()) is not None:
                self._admit(conn)
        finally:
            self._accepted_all.set()

    def _accepted(self) -> socket.socket | None:
        """The next connection, or None once stop() has shut the listening socket down."""
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return None
        return conn

    def _admit(self, conn: socket.socket) -> None:
        if not self._admits(conn):
            _shutdown_quietly(conn)
            conn.close()
            return
        # The native Node client and Rust write headers and body in separate segments
        # (docs/runtime-api.md#transport).
        with suppress(OSError):  # reset already: its serving thread will find out
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._connections_lock:
            full = len(self._connections) >= self._max_connections
            if not full:
                self._connections.add(conn)
                self._connections_lock.notify_all()
        if full:
            self._refuse(conn)
        elif self._crew is not None:
            self._crew.connections.put((self, conn))

    def _admits(self, conn: socket.socket) -> bool:
        """Whether `conn` comes from the attempt's own uid (always, without `peer_uid`)."""
        if self._peer_uid is None:
            return True
        try:
            return peers.peer_uid(conn) == self._peer_uid
        except OSError:  # /proc/net unreadable: nothing to go by
            return False
        except Exception:  # a bug here refuses the connection; it must not stop the acceptor
            _log.exception("Runtime API could not check a connection's peer")
            return False

    def _refuse(self, conn: socket.socket) -> None:
        with conn, suppress(OSError):
            _Client(self, HttpConnection(conn)).refuse(Rejected(
                HTTPStatus.SERVICE_UNAVAILABLE, "TooManyConnections",
                f"More than {self._max_connections} connections at once"))

    def _serve(self, conn: socket.socket) -> None:
        try:
            _Client(self, HttpConnection(conn)).serve()
        except OSError:
            pass  # a child killed mid-request resets its connection: expected, not an error
        except Exception:
            _log.exception("Runtime API request failed")
        finally:
            conn.close()  # before it is forgotten: stop() returns once none is left open
            with self._connections_lock:
                self._connections.discard(conn)
                self._held.discard(conn)
                self._connections_lock.notify_all()

    def stop(self) -> None:
        """Stop accepting, cut every connection (held `next` calls included), wait until each
        is served to its end and closed, and give the crew back."""
        self.state.close()
        self.state.release()
        _shutdown_quietly(self._listener)
        crew, self._crew = self._crew, None
        if crew is not None:
            self._accepted_all.wait()
        with self._connections_lock:
            for conn in self._connections:
                _shutdown_quietly(conn)
            self._connections_lock.wait_for(lambda: not self._connections)
        self._listener.close()
        if crew is not None:
            _CREWS.give_back(crew)

    def mark_held(self, conn: socket.socket) -> None:
        """`conn` is parked in a held `next`: it will not send anything more."""
        with self._connections_lock:
            self._held.add(conn)
            self._connections_lock.notify_all()

    def settle(self, timeout: float) -> None:
        """Wait until every connection is closed or held, i.e. nothing sent is left unread."""
        with self._connections_lock:
            self._connections_lock.wait_for(lambda: self._connections <= self._held, timeout)


def _shutdown_quietly(conn: socket.socket) -> None:
    with suppress(OSError):  # the peer is already gone
        conn.shutdown(socket.SHUT_RDWR)
