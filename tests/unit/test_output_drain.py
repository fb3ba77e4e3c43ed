"""What is left in the child's pipes once it is gone: read exactly, never waited for."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from runner.invocation import _drain
from runner.output import OutputCapture


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read, write = os.pipe()
    yield read, write
    os.close(read)
    os.close(write)


def test_what_is_buffered_is_read(pipe: tuple[int, int]) -> None:
    read, write = pipe
    lines: list[str] = []
    capture = OutputCapture(label="t/1", keep_bytes=1 << 20, tail_bytes=64, line_bytes=1024,
                            sink=lines.append)
    os.write(write, b"one\ntwo\n" * 1000)  # within the pipe's 64 KiB

    _drain({read: "stdout"}, capture)

    assert capture.total == 8000
    assert len(lines) == 2000


def test_a_writer_still_alive_cannot_keep_the_drain_going(pipe: tuple[int, int]) -> None:
    read, write = pipe
    lines: list[str] = []

    def sink(line: str) -> None:
        # A writer that outlived the sweep: every read makes room for more, at once.
        lines.append(line)
        os.write(write, b"more\n")

    capture = OutputCapture(label="t/1", keep_bytes=1 << 20, tail_bytes=64, line_bytes=1024,
                            sink=sink)
    os.write(write, b"left behind\n")

    _drain({read: "stderr"}, capture)

    assert lines == ["[udf t/1 stderr] left behind"]


def test_an_open_empty_pipe_is_not_waited_for(pipe: tuple[int, int]) -> None:
    read, _ = pipe
    capture = OutputCapture(label="t/1", keep_bytes=100, tail_bytes=64, line_bytes=80)

    _drain({read: "stdout"}, capture)

    assert capture.total == 0
