"""Request bodies as they arrive: Content-Length or chunked, every byte counted, a bounded
number of them kept.

`http.server` parses request lines and headers only; the body's framing is read here. A body is
read in pieces (`BodyReader`), so that an endpoint can act as soon as a body crosses its limit
(an endless stream must end the invocation as too large at once, not at the deadline) and then
drain the rest, keeping the connection's framing intact for the reply
(docs/runtime-api.md#transport; the limits: docs/runtime-api.md#limits).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

__all__ = ["Body", "BodyReader", "Truncated"]

_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_READ_SIZE = 1 << 20


class Truncated(Exception):  # noqa: N818 - a signal about the request, not a runner failure
    """The request body ended before its declared length or final chunk, or was malformed."""


@dataclass
class Body:
    """A body as it is read: every byte counted, at most `keep` of them kept."""

    keep: int
    data: bytearray = field(default_factory=bytearray)
    size: int = 0
    trailers: dict[str, str] = field(default_factory=dict)

    @property
    def overflowed(self) -> bool:
        """More than `keep` bytes have arrived."""
        return self.size > self.keep

    def take(self, chunk: bytes) -> None:
        """Count `chunk`, and keep what still fits."""
        self.size += len(chunk)
        room = self.keep - len(self.data)
        if room > 0:
            self.data += chunk[:room]


class BodyReader:
    """Reads one request body, chunked or of a known length, into a `Body`."""

    def __init__(self, rfile: BinaryIO, *, chunked: bool, length: int, keep: int) -> None:
        self.chunked = chunked
        self.length = length
        self.body = Body(keep)
        pieces = _chunked(rfile, self.body) if chunked else _exact(rfile, length)
        self._pieces: Iterator[bytes] = pieces

    def read(self) -> Body:
        """Read until the body ends or first crosses its `keep` limit; raises `Truncated`."""
        for piece in self._pieces:
            self.body.take(piece)
            if self.body.overflowed:
                break
        return self.body

    def drain(self) -> Body:
        """Read (and count) the rest of the body; raises `Truncated`."""
        for piece in self._pieces:
            self.body.take(piece)
        return self.body


def _exact(rfile: BinaryIO, length: int) -> Iterator[bytes]:
    remaining = length
    while remaining:
        chunk = rfile.read(min(remaining, _READ_SIZE))
        if not chunk:
            raise Truncated
        remaining -= len(chunk)
        yield chunk


def _chunked(rfile: BinaryIO, body: Body) -> Iterator[bytes]:
    while True:
        line = rfile.readline(1024)
        if not line.endswith(b"\n"):
            raise Truncated
        size_field = line.split(b";", 1)[0].strip()
        # int(x, 16) alone would take "-5", "+5", "0x5" and "5_0"; a negative size made
        # `read` raise ValueError, which dropped the connection without a reply.
        if not _CHUNK_SIZE.fullmatch(size_field):
            raise Truncated
        size = int(size_field, 16)
        if size == 0:
            break
        yield from _exact(rfile, size)
        if rfile.readline(3).strip():
            raise Truncated
    while True:
        line = rfile.readline(64 * 1024)
        if line in (b"\r\n", b"\n", b""):
            return
        name, _, value = line.decode("latin-1").partition(":")
        body.trailers[name.strip().lower()] = value.strip()
