"""The child's stdout and stderr: forwarded line by line to the runner's log, bounded, tailed.

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

__all__ = ["LineSink", "OutputCapture", "stdout_sink"]

#: Receives each forwarded, already-neutralised line (without its newline).
LineSink = Callable[[str], None]

# C0 and C1 controls (but tab), and the Unicode line and paragraph separators: anything a
# reader of the log might take for the start of a new line.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


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
        self._partial: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self._tail = bytearray()
        self.total = 0
        self.forwarded = 0
        self._dropped = False  # some output was not forwarded

    def feed(self, stream: str, data: bytes) -> None:
        """Take a chunk read from `stream` ("stdout" or "stderr")."""
        self.total += len(data)
        self._tail += data
        if len(self._tail) > 2 * self._tail_bytes:
            del self._tail[: len(self._tail) - self._tail_bytes]
        if self.forwarded >= self._keep:
            self._dropped = self._dropped or bool(data)
            return  # over the budget: counted, not kept
        partial = self._partial[stream]
        partial += data
        *lines, rest = partial.split(b"\n")
        for line in lines:
            self._forward(stream, line)
        partial[:] = rest
        while len(partial) > self._line_bytes:  # a line too long is forwarded in pieces
            self._forward(stream, partial[: self._line_bytes])
            del partial[: self._line_bytes]

    def close(self) -> LogsInfo:
        """Flush unterminated lines and summarise what was printed."""
        for stream, partial in self._partial.items():
            if partial:
                self._forward(stream, partial)
            partial.clear()
        tail = bytes(self._tail[-self._tail_bytes:]) if self._tail_bytes else b""
        return LogsInfo(tail=tail.decode("utf-8", "replace"), bytes=self.total,
                        truncated=self._dropped)

    def _forward(self, stream: str, line: bytes | bytearray) -> None:
        # A line too long goes in pieces, whether it came whole or is still unterminated.
        for start in range(0, max(len(line), 1), self._line_bytes):
            self._forward_piece(stream, line[start:start + self._line_bytes])

    def _forward_piece(self, stream: str, line: bytes | bytearray) -> None:
        room = self._keep - self.forwarded
        if len(line) > room:
            self._dropped = True
        if room <= 0:
            return
        line = line[:room]
        self.forwarded += len(line) + 1
        text = _CONTROL.sub(_escape, bytes(line).decode("utf-8", "replace").removesuffix("\r"))
        self._sink(f"[udf {self._label} {stream}] {text}")
