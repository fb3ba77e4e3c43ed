"""The HTTP plumbing the local services share: JSON in, JSON out, bearer auth, one error shape.

Every service is a `JsonApiServer` on loopback with a table of `POST` routes. A route gets an
`ApiRequest` (its JSON object body and bearer token) and returns the 200 body, or raises
`ApiError`, which `_render` turns into `{"error": {"code", "message"}}` with its status. Anything
else a route raises is a 500 whose details stay in the log. Requests beyond `max_in_flight`
are answered 429 at once rather than queued, so a client's retry policy is what absorbs load.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from pydantic import ValidationError

_log = logging.getLogger(__name__)

JsonObject = dict[str, Any]
#: A route: the request in, the 200 JSON body out (or ApiError).
Route = Callable[["ApiRequest"], JsonObject]

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_IN_FLIGHT = 16
#: Seconds a client may take to send a request before its connection is dropped.
SOCKET_TIMEOUT_SECONDS = 30
RETRY_AFTER_SECONDS = 1
# How often the serving loop checks for shutdown (a stop waits for the next check).
_POLL_SECONDS = 0.05


class ApiError(Exception):
    """A reply other than 200, rendered as `{"error": {"code", "message"}}`."""

    def __init__(self, status: HTTPStatus, code: str, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def unauthorized(message: str) -> ApiError:
    """401 for a missing, malformed, unverifiable, expired or foreign token."""
    return ApiError(HTTPStatus.UNAUTHORIZED, "invalid_token", message,
                    {"WWW-Authenticate": 'Bearer error="invalid_token"'})


def invalid_request(message: str) -> ApiError:
    """400 for a body that does not match the contract."""
    return ApiError(HTTPStatus.BAD_REQUEST, "invalid_request", message)


def invalid_body(error: ValidationError) -> ApiError:
    """400 naming every field of the body that does not match the contract."""
    return invalid_request("; ".join(f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}"
                                     for err in error.errors()))


@dataclass(frozen=True)
class ApiRequest:
    """A parsed request: its JSON object body, and its `Authorization: Bearer` credential."""

    body: JsonObject
    authorization: str | None = field(repr=False)

    def bearer(self) -> str:
        """The bearer credential; 401 when there is none."""
        scheme, _, credential = (self.authorization or "").partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise unauthorized("an Authorization: Bearer <token> header is required")
        return credential


class JsonApiServer:
    """A threaded HTTP/1.1 JSON API on 127.0.0.1, serving from a background thread."""

    def __init__(self, name: str, routes: Mapping[str, Route], *, port: int = 0,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> None:
        self.name = name
        self._routes = dict(routes)
        self._max_body_bytes = max_body_bytes
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.api = self
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": _POLL_SECONDS},
                                        name=f"devstack-{name}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:40123` (listening as soon as this object exists)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        """Stop serving and release the port."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def dispatch(self, handler: _Handler) -> tuple[HTTPStatus, JsonObject, dict[str, str]]:
        """Answer one request: find its route, read its body, take a slot, call the route."""
        path = urlsplit(handler.path).path
        route = self._routes.get(path)
        if route is None:
            raise ApiError(HTTPStatus.NOT_FOUND, "not_found", f"no such endpoint: {path}")
        if handler.command != "POST":
            raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, "method_not_allowed",
                           f"{path} accepts POST only", {"Allow": "POST"})
        request = ApiRequest(self._read_body(handler), handler.headers.get("Authorization"))
        if not self._slots.acquire(blocking=False):
            raise ApiError(HTTPStatus.TOO_MANY_REQUESTS, "rate_limited",
                           f"{self.name} is busy; retry later",
                           {"Retry-After": str(RETRY_AFTER_SECONDS)})
        try:
            return HTTPStatus.OK, route(request), {}
        finally:
            self._slots.release()

    def _read_body(self, handler: _Handler) -> JsonObject:
        if handler.headers.get("Transfer-Encoding"):
            raise ApiError(HTTPStatus.LENGTH_REQUIRED, "length_required",
                           "send the body with Content-Length, not chunked")
        raw_length = handler.headers.get("Content-Length")
        if raw_length is None or not raw_length.isdigit():
            raise ApiError(HTTPStatus.LENGTH_REQUIRED, "length_required",
                           "a Content-Length header is required")
        length = int(raw_length)
        if length > self._max_body_bytes:
            raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "payload_too_large",
                           f"the body is over {self._max_body_bytes} bytes")
        data = handler.rfile.read(length)
        handler.body_consumed = True
        media_type = handler.headers.get_content_type()
        if media_type != "application/json":
            raise ApiError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
                           "the body must be application/json")
        try:
            body = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise invalid_request(f"the body is not JSON: {e}") from e
        if not isinstance(body, dict):
            raise invalid_request("the body must be a JSON object")
        return body


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False
    api: JsonApiServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "udf-devstack"
    sys_version = ""
    timeout = SOCKET_TIMEOUT_SECONDS
    server: _Server
    body_consumed: bool

    # Every method is routed, so that the wrong one gets the JSON 405, not the stdlib's HTML 501.
    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def _handle(self) -> None:
        self.body_consumed = False
        try:
            status, body, headers = self.server.api.dispatch(self)
        except ApiError as e:
            status, body, headers = e.status, _error_body(e.code, e.message), e.headers
        except Exception:
            _log.exception("%s: unexpected failure on %s", self.server.api.name, self.path)
            status, body, headers = (HTTPStatus.INTERNAL_SERVER_ERROR,
                                     _error_body("internal", "internal error"), {})
        if not self.body_consumed:
            self.close_connection = True  # an unread body would be parsed as the next request
        self._render(status, body, headers)

    def _render(self, status: HTTPStatus, body: JsonObject, headers: Mapping[str, str]) -> None:
        data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line only (never headers: they carry the token), at debug level.
        _log.debug("%s: " + format, self.server.api.name, *args)


def _error_body(code: str, message: str) -> JsonObject:
    return {"error": {"code": code, "message": message}}
