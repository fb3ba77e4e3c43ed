"""One client connection's HTTP/1.1: requests in, replies out, every size the client controls
bounded.

h11 (a sans-IO HTTP/1.1 state machine) does the parsing: strict request lines and fields,
Content-Length and chunked framing, the CRLF after each chunk, `chunked` as the only transfer
coding. It bounds what it buffers of an incomplete request head, chunk-size line or trailer
block, but only while the bytes are still incomplete, so this module counts the bounds again
on what h11 parsed in one piece, and adds what h11 leaves to its user: a field count, a
refusal of repeated or contradictory framing fields (a smuggling signal), a bound on a chunked
body's non-data bytes, and the body limit itself. A client that crosses a bound gets its reply
at once and then loses the connection (docs/runtime-api.md#transport, the bounds
docs/runtime-api.md#limits).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from http import HTTPStatus

import h11

__all__ = [
    "DRAIN_BYTES",
    "MAX_CHUNK_OVERHEAD",
    "MAX_FIELDS",
    "MAX_HEAD_BYTES",
    "MAX_TRAILER_BYTES",
    "Body",
    "HttpConnection",
    "Rejected",
    "Request",
]

#: Request line and header fields together.
MAX_HEAD_BYTES = 16 * 1024
#: A chunked body's trailer block, which carries a failed stream's error body (base64), so it
#: is as large as the longest error message kept (`function_error`); also what h11 buffers of
#: any incomplete part of a request (head, chunk-size line, trailers).
MAX_TRAILER_BYTES = 64 * 1024
#: Header fields of a request, and trailer fields of a chunked body.
MAX_FIELDS = 100
#: Non-data bytes a chunked body may carry beyond 16 per chunk and twice its data: the rule of
#: Go's chunked reader (which Lambda's Runtime API runs on), so chunks that are all extension
#: cannot keep a body going without ever crossing the data limit.
MAX_CHUNK_OVERHEAD = 16 * 1024
#: Body read and dropped after a refusal so that the connection can carry the next request;
#: a longer body ends the connection instead.
DRAIN_BYTES = 64 * 1024
#: How long what a client still sends is read after a reply that ends its connection.
_LINGER_SECONDS = 1.0
_RECV_BYTES = 64 * 1024
#: What one read of a body asks for: a response of up to 6 MB is read in a few large reads,
#: each one h11 event, rather than in about a hundred (a third of the time to read it).
_BODY_RECV_BYTES = 1024 * 1024
_CONTENT_LENGTH = re.compile(rb"[0-9]{1,19}")
_FIELD_NAME = re.compile(rb"^([^:\r\n]*):[ \t]*([^\r\n]*?)[ \t]*\r?$", re.MULTILINE)
_HEAD_END = re.compile(rb"\n\r?\n")


class Rejected(Exception):  # noqa: N818 - a protocol reply, not a failure of the runner
    """A request answered with a JSON error reply. Made afresh for every request: a shared
    instance would grow its traceback with every raise."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def _refused_by_status(status: int, message: str) -> Rejected:
    phrase = HTTPStatus(status).phrase
    return Rejected(status, phrase.replace(" ", "").replace("-", ""), message or phrase)


def _invalid_content_length(message: str) -> Rejected:
    return Rejected(HTTPStatus.BAD_REQUEST, "InvalidContentLength", message)


def _truncated() -> Rejected:
    # Lambda gives this reply for every body it cannot read to its end.
    return Rejected(HTTPStatus.BAD_REQUEST, "TruncatedHTTPRequest",
                    "HTTP request detected as truncated")


@dataclass(frozen=True)
class Request:
    """A request's head; field names in lower case."""

    method: str
    path: str
    headers: dict[str, str]
    content_length: int | None  # None for a chunked body


@dataclass
class Body:
    """A body as it is read: every data byte counted, at most `keep` of them kept."""

    keep: int
    data: bytearray = field(default_factory=bytearray)
    size: int = 0
    trailers: dict[str, str] = field(default_factory=dict)
    complete: bool = False  # read to its end

    @property
    def overflowed(self) -> bool:
        """More than `keep` bytes have arrived."""
        return self.size > self.keep

    def take(self, chunk: bytes) -> None:
        self.size += len(chunk)
        room = self.keep - len(self.data)
        if room > 0:
            self.data += chunk[:room]


class HttpConnection:
    """h11 over one accepted socket. Methods raise `Rejected` for what the client got wrong
    (the connection cannot carry another request then) and `OSError` when it is gone."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_TRAILER_BYTES)
        self._method = b""
        # The current request's body so far: bytes given to h11 after its head, data, chunks.
        self._body_fed = self._data = self._chunks = 0

    def next_request(self) -> Request | None:
        """The next request's head, or None once the client has closed the connection."""
        if self._h11.their_state is h11.DONE and self._h11.our_state is h11.DONE:
            self._h11.start_next_cycle()
        self._method = b""  # until h11 has read one: it frames the reply by the method
        mirror = bytearray(self._h11.trailing_data[0])
        try:
            event = self._next_event(mirror)
        except h11.RemoteProtocolError as e:
            raise _head_refusal(e, bytes(mirror)) from None
        if not isinstance(event, h11.Request):
            return None  # ConnectionClosed: the only other event h11 gives in this state
        left = len(self._h11.trailing_data[0])
        self._body_fed, self._data, self._chunks = left, 0, 0
        return self._request(event, bytes(mirror[: len(mirror) - left]))

    def read_body(self, body: Body) -> Body:
        """Read into `body` until the body ends or first crosses `body.keep`."""
        while not body.complete and not body.overflowed:
            self._step(body)
        return body

    def drain(self) -> bool:
        """Read and drop the rest of the body, up to `DRAIN_BYTES`; True if it ended. A client
        still waiting for `100 Continue` is not asked for a body only to drop it."""
        if self._h11.they_are_waiting_for_100_continue:
            return False
        return self.read_body(Body(keep=DRAIN_BYTES) if self.reading_body
                              else Body(keep=0, complete=True)).complete

    @property
    def reading_body(self) -> bool:
        """The current request's body has not been read to its end."""
        return self._h11.their_state is h11.SEND_BODY

    def send(self, status: int, body: bytes, headers: list[tuple[str, str]], *,
             close: bool) -> bool:
        """Write a whole reply; True if the connection can carry another request."""
        close = close or self._h11.their_state not in {h11.IDLE, h11.DONE}
        fields = [("Server", "udf-runner"), ("Content-Length", str(len(body))), *headers]
        if close:
            fields.append(("Connection", "close"))
        out = self._h11.send(h11.Response(status_code=status, headers=fields,
                                          reason=HTTPStatus(status).phrase))
        if self._method != b"HEAD":
            out += self._h11.send(h11.Data(data=body))
        out += self._h11.send(h11.EndOfMessage())
        self.sock.sendall(out)
        return not close and self._h11.our_state is h11.DONE

    def linger(self, max_bytes: int, seconds: float = _LINGER_SECONDS) -> None:
        """End the connection after a reply: stop sending, and read what the client still
        sends, up to `max_bytes` and for at most `seconds` (0: only what has arrived). Unread
        bytes would make the kernel reset the connection, and the reset can lose the reply on
        its way: a client that writes its whole body before reading (most do) would see a
        broken pipe instead."""
        with suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(seconds)
            left = max_bytes
            while left > 0 and (data := self.sock.recv(min(left, _RECV_BYTES))):
                left -= len(data)

    def _request(self, event: h11.Request, head: bytes) -> Request:
        self._method = event.method
        if len(head) > MAX_HEAD_BYTES or len(event.headers) > MAX_FIELDS:
            raise _head_too_large()
        problem = _framing_problem(head)
        if problem is not None:
            raise _invalid_content_length(problem)
        headers = {name.decode("latin-1"): value.decode("latin-1")
                   for name, value in event.headers}
        length = headers.get("content-length")
        return Request(event.method.decode("latin-1"),
                       event.target.decode("latin-1").split("?", 1)[0], headers,
                       None if "transfer-encoding" in headers else int(length or 0))

    def _step(self, body: Body) -> None:
        """Take the next body event into `body`."""
        if self._h11.they_are_waiting_for_100_continue:
            go_on = h11.InformationalResponse(status_code=100, headers=[], reason="Continue")
            self.sock.sendall(self._h11.send(go_on))
        try:
            event = self._next_event(None)
        except h11.RemoteProtocolError as e:
            raise (_truncated() if e.error_status_hint == HTTPStatus.BAD_REQUEST
                   else _refused_by_status(e.error_status_hint, str(e))) from None
        if isinstance(event, h11.Data):
            self._chunks += event.chunk_start
            self._data += len(event.data)
            body.take(event.data)
        elif isinstance(event, h11.EndOfMessage):
            body.trailers = _trailers(event.headers)
            self._check_overhead(trailers=sum(len(n) + len(v) + 4 for n, v in event.headers))
            body.complete = True
        else:  # ConnectionClosed cannot come before the end of a body; nothing else can
            raise _truncated()

    def _next_event(self, mirror: bytearray | None) -> h11.Event | type[h11.PAUSED | h11.NEED_DATA]:
        """h11's next event, receiving as it needs; `mirror` collects what a head is read
        from (h11 keeps no copy of it)."""
        while (event := self._h11.next_event()) is h11.NEED_DATA:
            if mirror is None:
                self._check_overhead()
            data = self.sock.recv(_RECV_BYTES if mirror is not None else _BODY_RECV_BYTES)
            self._h11.receive_data(data)
            if mirror is not None:
                mirror += data
            else:
                self._body_fed += len(data)
        return event

    def _check_overhead(self, trailers: int = 0) -> None:
        """Refuse a chunked body whose non-data bytes (`trailers` aside, bounded on their own)
        outgrow its data (see `MAX_CHUNK_OVERHEAD`). Checked whenever h11 needs more, so an
        endless body is caught, and at the end, for a body that came in one piece."""
        if not self._chunks:
            return
        overhead = self._body_fed - len(self._h11.trailing_data[0]) - self._data - trailers
        if overhead - 16 * self._chunks - 2 * self._data > MAX_CHUNK_OVERHEAD:
            raise _truncated()


def _head_refusal(error: h11.RemoteProtocolError, received: bytes) -> Rejected:
    """The reply to a request head h11 could not parse: a head too large is that before
    anything else, as it would be to a reader that stops at the bound."""
    end = _HEAD_END.search(received)
    head = received[: end.end()] if end else received
    if len(head) > MAX_HEAD_BYTES:
        return _head_too_large()
    status = error.error_status_hint
    problem = _framing_problem(head) if status == HTTPStatus.BAD_REQUEST else None
    if problem is not None:
        return _invalid_content_length(problem)
    return _refused_by_status(status, str(error))


def _head_too_large() -> Rejected:
    return _refused_by_status(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                              "Request header fields too large")


def _framing_problem(head: bytes) -> str | None:
    """What is wrong with a head's Content-Length, read from its raw bytes: h11 merges
    repeated equal values, which a second reader of the same bytes might not."""
    lengths, encoded = [], False
    for match in _FIELD_NAME.finditer(head):
        name = match[1].strip().lower()
        if name == b"content-length":
            lengths.append(match[2])
        encoded = encoded or name == b"transfer-encoding"
    if not lengths:
        return None
    if len(lengths) > 1:
        return "Content-Length is given more than once"
    if encoded:
        return "Content-Length and Transfer-Encoding are both given"
    if not _CONTENT_LENGTH.fullmatch(lengths[0]):
        return "Content-Length is not a non-negative integer"
    return None


def _trailers(fields: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    size = sum(len(name) + len(value) + 4 for name, value in fields)
    if len(fields) > MAX_FIELDS or size > MAX_TRAILER_BYTES:
        raise _refused_by_status(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                                 "Trailer fields too large")
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in fields}
