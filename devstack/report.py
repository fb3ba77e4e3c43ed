"""What `udf-runner invoke` and `run-task` print for a person: a short summary of the result.

The bundle's own output has already gone by, line by line on standard error, as it ran; the
summary (standard output) says how it ended, what it answered, where the time went and how the
log ended. Colour only on a terminal, and never with NO_COLOR set (https://no-color.org).
`--json` prints the result itself instead, for scripts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

#: Lines of the log tail the summary repeats.
TAIL_LINES = 10
#: Characters of the response the summary shows (`--json` prints all of it).
RESPONSE_CHARS = 2_000
#: Stack frames of a function error the summary shows.
STACK_FRAMES = 8

_CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33"}


@dataclass(frozen=True)
class Style:
    """ANSI colour, or plain text."""

    colour: bool

    @classmethod
    def for_stream(cls, stream: TextIO, environ: Mapping[str, str] | None = None) -> Style:
        """Colour when `stream` is a terminal and NO_COLOR is unset or empty."""
        environ = os.environ if environ is None else environ
        return cls(colour=stream.isatty() and not environ.get("NO_COLOR"))

    def __call__(self, text: str, *styles: str) -> str:
        if not self.colour or not styles:
            return text
        codes = ";".join(_CODES[style] for style in styles)
        return f"\x1b[{codes}m{text}\x1b[0m"


def summary(result: Mapping[str, Any], style: Style, *, wall_ms: int | None = None) -> str:
    """The summary of one result, ending with a newline."""
    return "".join(line + "\n" for line in [
        _status_line(result, style, wall_ms),
        *_outcome_lines(result, style),
        *_tail_lines(result.get("logs") or {}, style),
    ])


def _status_line(result: Mapping[str, Any], style: Style, wall_ms: int | None) -> str:
    status = str(result.get("status"))
    timings = dict(result.get("timings_ms") or {})
    total = timings.pop("total", None)
    mark = style(status, "bold", "green" if status == "succeeded" else "red")
    took = f" in {total} ms" if total is not None else ""
    wall = f", {wall_ms} ms wall" if wall_ms is not None else ""
    phases = ", ".join(f"{name} {ms}" for name, ms in timings.items())
    return f"{mark}{took}{wall}" + (style(f"  ({phases} ms)", "dim") if phases else "")


def _outcome_lines(result: Mapping[str, Any], style: Style) -> list[str]:
    error = result.get("error")
    if isinstance(error, dict):
        retry = "retryable" if error.get("retryable") else "not retryable"
        lines = [f"{style('error', 'bold')}: {style(str(error.get('type')), 'red')} "
                 f"({retry}): {error.get('message')}"]
        function_error = error.get("function_error") or {}
        frames = list(function_error.get("stack_trace") or [])
        lines += [style(f"  {frame}", "dim") for frame in frames[:STACK_FRAMES]]
        if len(frames) > STACK_FRAMES:
            lines.append(style(f"  ... {len(frames) - STACK_FRAMES} more frames (--json)", "dim"))
        return lines
    if result.get("response_base64") is not None:
        size = len(str(result["response_base64"])) * 3 // 4
        return [f"{style('response', 'bold')}: about {size} bytes, not JSON (base64 in --json)"]
    text = json.dumps(result.get("response"), ensure_ascii=False)
    if len(text) > RESPONSE_CHARS:
        text = f"{text[:RESPONSE_CHARS]} ... ({len(text)} characters; --json prints it whole)"
    return [f"{style('response', 'bold')}: {text}"]


def _tail_lines(logs: Mapping[str, Any], style: Style) -> list[str]:
    printed = int(logs.get("bytes") or 0)
    if not printed:
        return [style("log: the bundle printed nothing", "dim")]
    lines = str(logs.get("tail") or "").splitlines()
    shown = lines[-TAIL_LINES:]
    last = "the last line" if len(shown) == 1 else f"the last {len(shown)} lines"
    head = f"log: {printed} bytes printed; {last}:"
    if logs.get("truncated"):
        dropped = int(logs.get("dropped_bytes") or 0)
        why = (f"{dropped} bytes of output not kept: over the log limit" if dropped
               else "output cut short: the runtime was still writing when it was stopped")
        head += " " + style(f"({why})", "yellow")
    return [style(head, "dim"), *(f"  {style('|', 'dim')} {line}" for line in shown)]


def count(number: int, noun: str) -> str:
    """`1 object`, `2 objects`."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def warning(text: str, style: Style) -> str:
    """One warning line for standard error."""
    return f"udf-runner: {style('warning', 'bold', 'yellow')}: {text}\n"
