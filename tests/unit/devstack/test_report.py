"""The summary `udf-runner invoke` prints for a person, from results shaped as the runner's."""

from __future__ import annotations

import io
from typing import Any

from devstack.report import RESPONSE_CHARS, STACK_FRAMES, TAIL_LINES, Style, summary

PLAIN = Style(colour=False)


def result(**fields: Any) -> dict[str, Any]:
    return {"status": "succeeded", "response": {"ok": True}, "response_base64": None,
            "timings_ms": {"init": 40, "invoke": 9, "total": 70},
            "logs": {"tail": "", "bytes": 0, "truncated": False}} | fields


def test_a_success_names_status_timings_and_response() -> None:
    lines = summary(result(), PLAIN, wall_ms=90).splitlines()

    assert lines == [
        "succeeded in 70 ms, 90 ms wall  (init 40, invoke 9 ms)",
        'response: {"ok": true}',
        "log: the bundle printed nothing",
    ]


def test_a_function_error_shows_its_first_frames() -> None:
    frames = [f"at frame {n}" for n in range(STACK_FRAMES + 3)]
    error = {"type": "Function.Error", "message": "Boom: it broke", "retryable": False,
             "function_error": {"error_type": "Boom", "error_message": "it broke",
                                "stack_trace": frames}}

    text = summary(result(status="failed", response=None, error=error), PLAIN)

    assert "error: Function.Error (not retryable): Boom: it broke" in text
    assert f"  at frame {STACK_FRAMES - 1}\n" in text
    assert f"at frame {STACK_FRAMES}\n" not in text
    assert "... 3 more frames (--json)" in text


def test_the_log_tail_keeps_its_last_lines_and_says_when_output_was_dropped() -> None:
    tail = "".join(f"line {n}\n" for n in range(TAIL_LINES + 5))
    logs = {"tail": tail, "bytes": 123_456, "truncated": True}

    lines = summary(result(logs=logs), PLAIN).splitlines()

    assert lines[2].startswith(f"log: 123456 bytes printed; the last {TAIL_LINES} lines:")
    assert "cut short" in lines[2]
    assert lines[3:] == [f"  | line {n}" for n in range(5, TAIL_LINES + 5)]
    dropped = summary(result(logs=logs | {"dropped_bytes": 4096}), PLAIN).splitlines()[2]
    assert dropped.endswith("(4096 bytes of output not kept: over the log limit)")


def test_a_long_response_is_cut_and_a_binary_one_described() -> None:
    long = summary(result(response="x" * (RESPONSE_CHARS * 2)), PLAIN)
    binary = summary(result(response=None, response_base64="AAAA"), PLAIN)

    assert f"({RESPONSE_CHARS * 2 + 2} characters; --json prints it whole)" in long
    assert "response: about 3 bytes, not JSON (base64 in --json)" in binary


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_without_no_color() -> None:
    assert Style.for_stream(_Terminal(), {}).colour
    assert not Style.for_stream(_Terminal(), {"NO_COLOR": "1"}).colour
    assert Style.for_stream(_Terminal(), {"NO_COLOR": ""}).colour  # set but empty: no effect
    assert not Style.for_stream(io.StringIO(), {}).colour
