"""The child's stdout, stderr and (Node) console records: forwarded line by line to the
runner's log, bounded, tailed, and what was dropped counted.

Every forwarded line carries a `[udf <task>/<attempt> <stream>]` prefix and has its control
characters escaped, so nothing the bundle prints can pass for one of Lambda's own records
(`START`/`END`/`REPORT RequestId: …`) or for one of the runner's JSON log lines: those are only
recognised at the start of a line, and a forwarded line never starts with the bundle's bytes.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

from runner.models import LogsInfo

__all__ = ["CONSOLE", "LineSink", "OutputCapture", "stdout_sink"]

#: The stream of Lambda's telemetry log frames, which a managed runtime's client writes its
#: console records to (`_LAMBDA_TELEMETRY_LOG_FD`); forwarded under this name.
CONSOLE = "console"

#: Receives each forwarded, already-neutralised line (without its newline).
LineSink = Callable[[str], None]

# C0 and C1 controls (but tab), and the Unicode line and paragraph separators: anything a
# reader of the log might take for the start of a new line.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


class _Frames:
    """Lambda's telemetry log frames, decoded as they arrive: a 16-byte header (type, message
    length, timestamp; big-endian) and the message. Messages are passed on piece by piece, so
    a frame's declared length never makes the runner buffer it. A header that is not a frame
    (something else wrote to the descriptor) turns the rest of the stream into plain text:
    nothing written there is lost."""

    _HEADER = 16
    _MAGIC = b"\xa5\x5a"  # high half of every frame type (0xa55a0002 | level, 0xa55a0003 | level)

    def __init__(self) -> None:
        self._header = bytearray()
        self._left = 0  # bytes of the current message still to come
        self._plain = False

    def decode(self, data: bytes) -> list[bytes]:
        """The message bytes in `data`, in order."""
        pieces: list[bytes] = []
        view = memoryview(data)
        while view and not self._plain:
            if self._left:
                piece, view = view[:self._left], view[self._left:]
                self._left -= len(piece)
                pieces.append(bytes(piece))
                continue
            take = self._HEADER - len(self._header)
            self._header += view[:take]
            view = view[take:]
            if len(self._header) < self._HEADER:
                break
            length = int.from_bytes(self._header[4:8], "big", signed=True)
            if self._header.startswith(self._MAGIC) and length >= 0:
                self._left = length
            else:
                self._plain = True
                pieces.append(bytes(self._header))
            self._header.clear()
        if view:
            pieces.append(bytes(view))
        return pieces


def stdout_sink(line: str) -> None:
    """Write a forwarded line to the runner's stdout, which Lambda ships to CloudWatch."""
    sys.stdout.write(line + "\n")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


class OutputCapture:
    """Collects what one child prints on its two streams."""

    def __init__(self, *, label: str, keep_bytes: int, tail_bytes: int, line_bytes: int,
                 sink: LineSink = stdout_sink) -> None:
        self._label = label
        self._keep = keep_bytes
        self._tail_bytes = tail_bytes
        self._line_bytes = line_bytes
        self._sink = sink
        self._partial: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray(),
                                               CONSOLE: bytearray()}
        self._frames = _Frames()
        self._tail = bytearray()
        self.total = 0
        self.forwarded = 0
        self._delivered = 0  # bytes of `total` the sink got (content and line ends)
        self._cut_short = False  # the runner stopped reading while the child was still writing

    def feed(self, stream: str, data: bytes) -> None:
        """Take a chunk read from `stream` ("stdout", "stderr", or `CONSOLE`'s frames)."""
        if stream == CONSOLE:
            for message in self._frames.decode(data):
                self._take(stream, message)
        else:
            self._take(stream, data)

    def _take(self, stream: str, data: bytes) -> None:
        self.total += len(data)
        self._tail += data
        if len(self._tail) > 2 * self._tail_bytes:
            del self._tail[: len(self._tail) - self._tail_bytes]
        if self.forwarded >= self._keep:
            return  # over the budget: counted (as dropped), not kept
        partial = self._partial[stream]
        partial += data
        *lines, rest = partial.split(b"\n")
        for line in lines:
            self._forward(stream, line, ended=True)
        partial[:] = rest
        while len(partial) > self._line_bytes:  # a line too long is forwarded in pieces
            self._forward(stream, partial[: self._line_bytes])
            del partial[: self._line_bytes]

    def cut_short(self) -> None:
        """Note that reading stopped while the child was still writing: what it had not yet
        written is unknown, so the logs are marked truncated without a count for it."""
        self._cut_short = True

    def close(self) -> LogsInfo:
        """Flush unterminated lines and summarise what was printed."""
        for stream, partial in self._partial.items():
            if partial:
                self._forward(stream, partial)
            partial.clear()
        tail = bytes(self._tail[-self._tail_bytes:]) if self._tail_bytes else b""
        dropped = self.total - self._delivered
        return LogsInfo(tail=tail.decode("utf-8", "replace"), bytes=self.total,
                        truncated=bool(dropped) or self._cut_short, dropped_bytes=dropped)

    def _forward(self, stream: str, line: bytes | bytearray, *, ended: bool = False) -> None:
        # A line too long goes in pieces, whether it came whole or is still unterminated.
        starts = range(0, max(len(line), 1), self._line_bytes)
        for start in starts:
            self._forward_piece(stream, line[start:start + self._line_bytes],
                                ended=ended and start == starts[-1])

    def _forward_piece(self, stream: str, line: bytes | bytearray, *, ended: bool) -> None:
        room = self._keep - self.forwarded
        if room <= 0:
            return
        whole = len(line) <= room
        line = line[:room]
        self.forwarded += len(line) + 1
        self._delivered += len(line) + (ended and whole)
        text = _CONTROL.sub(_escape, bytes(line).decode("utf-8", "replace").removesuffix("\r"))
        self._sink(f"[udf {self._label} {stream}] {text}")
