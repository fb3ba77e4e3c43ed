"""The driver's pure parts: how each way an invocation ends becomes the error the result reports
(`judge`, docs/runtime-api.md#outcomes), and what is left in the child's pipes once it is gone,
read exactly (`drain`)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from runner.errors import (
    ExitError,
    FunctionError,
    InitError,
    InvalidResponseModeError,
    InvocationError,
    ResponseTooLargeError,
    TimedOutError,
)
from runner.invoke.driver import drain, judge
from runner.invoke.output import OutputCapture
from runner.models import FunctionErrorBody
from runner.runtime_api import (
    Answer,
    InvalidResponseMode,
    LateAnswer,
    Oversized,
    PostedError,
    Response,
)

RID = "8476a536-e9f4-11e8-9739-2dfe598c3fcd"
POSTED = FunctionErrorBody(error_type="ValueError", error_message="boom", stack_trace=["f"])


def _error(answer: Answer | None, *, exited: bool = True,
           returncode: int | None = 0) -> InvocationError:
    response, error = judge(answer, exited=exited, returncode=returncode, request_id=RID,
                             timeout=1.5)
    assert response is None
    assert error is not None
    return error


def test_a_response_is_the_outcome() -> None:
    response = Response(b"{}", "application/json")

    assert judge(response, exited=False, returncode=None, request_id=RID,
                  timeout=1.0) == (response, None)


def test_an_init_error() -> None:
    error = _error(PostedError("init", POSTED))

    assert isinstance(error, InitError)
    assert error.message == "ValueError: boom"
    assert error.function_error == POSTED


def test_a_function_error() -> None:
    error = _error(PostedError("invocation", POSTED), exited=False)

    assert isinstance(error, FunctionError)
    assert error.function_error == POSTED


def test_a_response_too_large() -> None:
    error = _error(Oversized(101, 100))

    assert isinstance(error, ResponseTooLargeError)
    assert error.message == ("Response payload size (101 bytes) exceeded maximum allowed "
                             "payload size (100 bytes).")


def test_an_invalid_response_mode() -> None:
    error = _error(InvalidResponseMode("buffered"))

    assert isinstance(error, InvalidResponseModeError)
    assert error.error_type == "Runtime.InvalidResponseModeHeader"


@pytest.mark.parametrize("answer", [LateAnswer(), None])
def test_a_late_answer_or_none_by_the_deadline_is_a_timeout(answer: Answer | None) -> None:
    error = _error(answer, exited=False, returncode=None)

    assert isinstance(error, TimedOutError)
    assert error.error_type == "Sandbox.Timedout"
    assert error.message == f"RequestId: {RID} Error: Task timed out after 1.50 seconds"


@pytest.mark.parametrize(("returncode", "reason"), [
    (3, "Runtime exited with error: exit status 3"),
    (0, "Runtime exited without providing a reason"),
    (-signal.SIGKILL, "Runtime exited with error: signal: killed (SIGKILL)"),
    (-signal.SIGSEGV, "Runtime exited with error: signal: segmentation fault (SIGSEGV)"),
])
def test_an_exit_without_an_answer(returncode: int, reason: str) -> None:
    error = _error(None, returncode=returncode)

    assert isinstance(error, ExitError)
    assert error.message == f"RequestId: {RID} Error: {reason}"


# --- drain ----------------------------------------------------------------------------------------
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

    drain({read: "stdout"}, capture)

    assert capture.total == 8000
    assert len(lines) == 2000


def test_a_writer_still_alive_cannot_keep_thedrain_going(pipe: tuple[int, int]) -> None:
    read, write = pipe
    lines: list[str] = []

    def sink(line: str) -> None:
        # A writer that outlived the sweep: every read makes room for more, at once.
        lines.append(line)
        os.write(write, b"more\n")

    capture = OutputCapture(label="t/1", keep_bytes=1 << 20, tail_bytes=64, line_bytes=1024,
                            sink=sink)
    os.write(write, b"left behind\n")

    drain({read: "stderr"}, capture)

    assert lines == ["[udf t/1 stderr] left behind"]


def test_an_open_empty_pipe_is_not_waited_for(pipe: tuple[int, int]) -> None:
    read, _ = pipe
    capture = OutputCapture(label="t/1", keep_bytes=100, tail_bytes=64, line_bytes=80)

    drain({read: "stdout"}, capture)

    assert capture.total == 0
