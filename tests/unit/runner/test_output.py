"""`OutputCapture`: the child's output, forwarded line by line, neutralised, bounded, tailed."""

from __future__ import annotations

import json

import pytest

from runner.invoke.output import CONSOLE, OutputCapture

PREFIX = "[udf task-1/2 stdout] "


def _capture(*, keep: int = 1 << 20, tail: int = 4096,
             line: int = 16 * 1024) -> tuple[OutputCapture, list[str]]:
    lines: list[str] = []
    capture = OutputCapture(label="task-1/2", keep_bytes=keep, tail_bytes=tail, line_bytes=line,
                            sink=lines.append)
    return capture, lines


def test_lines_are_split_across_chunks_and_prefixed() -> None:
    capture, lines = _capture()

    capture.feed("stdout", b"first li")
    capture.feed("stdout", b"ne\nsecond line\nthi")
    capture.feed("stdout", b"rd\n")

    assert lines == [PREFIX + "first line", PREFIX + "second line", PREFIX + "third"]


def test_each_stream_keeps_its_own_partial_line() -> None:
    capture, lines = _capture()

    capture.feed("stdout", b"out-a ")
    capture.feed("stderr", b"err-a ")
    capture.feed("stdout", b"out-b\n")
    capture.feed("stderr", b"err-b\n")

    assert lines == [PREFIX + "out-a out-b", "[udf task-1/2 stderr] err-a err-b"]


def test_an_unterminated_last_line_is_flushed_at_close() -> None:
    capture, lines = _capture()
    capture.feed("stderr", b"no newline at the end")

    logs = capture.close()

    assert lines == ["[udf task-1/2 stderr] no newline at the end"]
    assert logs.bytes == len(b"no newline at the end")
    assert logs.truncated is False


def test_crlf_endings_are_dropped() -> None:
    capture, lines = _capture()

    capture.feed("stdout", b"windows line\r\n\r\n")

    assert lines == [PREFIX + "windows line", PREFIX]


@pytest.mark.parametrize("text", [
    "REPORT RequestId: 8476a536-e9f4-11e8-9739-2dfe598c3fcd\tDuration: 1.00 ms",
    "START RequestId: 8476a536-e9f4-11e8-9739-2dfe598c3fcd Version: $LATEST",
    "END RequestId: 8476a536-e9f4-11e8-9739-2dfe598c3fcd",
    json.dumps({"level": "ERROR", "message": "forged runner record", "service": "udf-runner"}),
])
def test_lines_that_look_like_lambda_or_runner_records_are_neutralised(text: str) -> None:
    capture, lines = _capture()

    capture.feed("stdout", text.encode() + b"\n")

    assert lines == [PREFIX + text]
    # Lambda's records and the runner's JSON lines are only recognised at the start of a line.
    assert not lines[0].startswith(("REPORT", "START", "END", "{"))


def test_control_characters_are_escaped() -> None:
    capture, lines = _capture()

    capture.feed("stdout", b"\x1b[31mred\x1b[0m\x07 cr\rREPORT RequestId: x\x00\x7f\ttab\n")

    assert lines == [PREFIX + "\\x1b[31mred\\x1b[0m\\x07 cr\\x0dREPORT RequestId: x\\x00\\x7f\ttab"]


@pytest.mark.parametrize(("raw", "escaped"), [
    ("next\u0085REPORT RequestId: x", "next\\x85REPORT RequestId: x"),  # NEL
    ("next\u2028REPORT RequestId: x", "next\\u2028REPORT RequestId: x"),  # line separator
    ("next\u2029{}", "next\\u2029{}"),  # paragraph separator
    ("csi \u009b31m", "csi \\x9b31m"),  # C1 control
])
def test_unicode_line_breaks_and_c1_controls_are_escaped(raw: str, escaped: str) -> None:
    capture, lines = _capture()

    capture.feed("stdout", raw.encode() + b"\n")

    assert lines == [PREFIX + escaped]
    assert len(lines[0].splitlines()) == 1


def test_invalid_utf8_is_replaced() -> None:
    capture, lines = _capture()

    capture.feed("stdout", b"caf\xc3\xa9 \xff\xfe ok\n")

    assert lines == [PREFIX + "café \ufffd\ufffd ok"]


def test_a_long_line_is_forwarded_in_pieces() -> None:
    capture, lines = _capture(line=100)

    capture.feed("stdout", b"a" * 250 + b"\n")

    assert lines == [PREFIX + "a" * 100, PREFIX + "a" * 100, PREFIX + "a" * 50]


def test_output_over_the_budget_is_counted_not_kept() -> None:
    capture, lines = _capture(keep=100, tail=32)
    for i in range(50):
        capture.feed("stdout", b"line %02d\n" % i)  # 8 bytes each

    logs = capture.close()

    assert lines == [f"{PREFIX}line {i:02d}" for i in range(12)] + [PREFIX + "line"]
    assert logs.bytes == 50 * 8
    assert logs.truncated is True
    assert logs.tail == "".join(f"line {i:02d}\n" for i in range(46, 50))


def test_what_is_dropped_is_counted() -> None:
    capture, lines = _capture(keep=100)
    for i in range(50):
        capture.feed("stdout", b"line %02d\n" % i)

    logs = capture.close()

    delivered = sum(len(line.removeprefix(PREFIX)) + 1 for line in lines) - 1  # last one cut
    assert logs.dropped_bytes == 50 * 8 - delivered == 300


def test_a_long_line_in_pieces_is_not_dropped() -> None:
    capture, lines = _capture(line=100)

    capture.feed("stdout", b"a" * 250 + b"\n")
    logs = capture.close()

    assert len(lines) == 3
    assert (logs.truncated, logs.dropped_bytes) == (False, 0)


def test_output_cut_short_is_truncated_even_with_nothing_dropped() -> None:
    capture, _ = _capture()
    capture.feed("stdout", b"still writing\n")

    capture.cut_short()
    logs = capture.close()

    assert (logs.truncated, logs.dropped_bytes) == (True, 0)


def _frame(message: bytes, frame_type: int = 0xA55A0003) -> bytes:
    return (frame_type.to_bytes(4, "big") + len(message).to_bytes(4, "big")
            + (1_700_000_000_000_000).to_bytes(8, "big") + message)


def test_telemetry_frames_become_lines_whatever_the_chunking() -> None:
    data = _frame(b"2026-01-01T00:00:00Z\tid\tINFO\tone\n") + _frame(b"two\nthree\n",
                                                                      0xA55A0017)
    for size in (1, 7, 16, len(data)):
        capture, lines = _capture()
        for start in range(0, len(data), size):
            capture.feed(CONSOLE, data[start:start + size])
        logs = capture.close()

        assert lines == ["[udf task-1/2 console] 2026-01-01T00:00:00Z\tid\tINFO\tone",
                         "[udf task-1/2 console] two", "[udf task-1/2 console] three"]
        assert logs.bytes == len(data) - 32  # the messages, not the frames' headers
        assert logs.tail.endswith("two\nthree\n")


def test_bytes_that_are_not_frames_are_kept_as_text() -> None:
    capture, lines = _capture()

    capture.feed(CONSOLE, _frame(b"framed\n") + b"written to the descriptor by hand\n")
    logs = capture.close()

    assert [line.removeprefix("[udf task-1/2 console] ") for line in lines] == [
        "framed", "written to the descriptor by hand"]
    assert logs.dropped_bytes == 0


def test_a_huge_declared_frame_is_streamed_not_buffered() -> None:
    capture, lines = _capture(line=80)
    header = _frame(b"")[:4] + (2**31 - 1).to_bytes(4, "big") + bytes(8)

    capture.feed(CONSOLE, header + b"x" * 1000)

    assert capture.total == 1000
    assert len(lines) == 12  # forwarded as it comes, in pieces, not held for the whole frame


def test_output_exactly_at_the_budget_is_not_truncated() -> None:
    capture, lines = _capture(keep=80)
    for i in range(10):
        capture.feed("stderr", b"line %02d\n" % i)

    logs = capture.close()

    assert len(lines) == 10
    assert logs.truncated is False
    assert logs.bytes == 80


def test_a_line_cut_by_the_budget_is_reported_as_truncated() -> None:
    capture, lines = _capture(keep=100, line=80)

    capture.feed("stdout", b"b" * 100)  # no newline: two pieces, the last one cut
    logs = capture.close()

    assert "".join(line.removeprefix(PREFIX) for line in lines) != "b" * 100
    assert logs.truncated is True


def test_the_tail_is_the_last_bytes_of_both_streams() -> None:
    capture, _ = _capture(tail=16)

    capture.feed("stdout", b"0123456789\n")
    capture.feed("stderr", b"abcdefghij\n")
    logs = capture.close()

    assert logs.tail == "6789\nabcdefghij\n"
    assert len(logs.tail) == 16


def test_the_tail_keeps_raw_text_and_survives_a_cut_character() -> None:
    capture, _ = _capture(tail=4)

    capture.feed("stdout", "xé\x1bZ\n".encode())  # the cut falls inside "é"
    logs = capture.close()

    assert logs.tail == "\ufffd\x1bZ\n"


def test_no_tail_when_none_is_wanted() -> None:
    capture, _ = _capture(tail=0)

    capture.feed("stdout", b"something\n")

    assert capture.close().tail == ""


def test_nothing_printed() -> None:
    capture, lines = _capture()

    logs = capture.close()

    assert lines == []
    assert (logs.tail, logs.bytes, logs.truncated) == ("", 0, False)
