"""The pure parts of the Runtime API emulation: error bodies, and the invocation state machine."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import pytest

from runner.runtime_api import (
    Invocation,
    InvocationState,
    LateAnswer,
    Phase,
    PostedError,
    Response,
    parse_function_error,
)
from runner.runtime_api.state import (
    Hold,
    InvalidRequestId,
    NotAllowed,
    Refusal,
    TooLate,
)

# --- parse_function_error ---------------------------------------------------------------------

PYTHON_BODY = {  # awslambdaric, with no error-type header
    "errorMessage": "division by zero", "errorType": "ZeroDivisionError",
    "requestId": "8476a536-e9f4-11e8-9739-2dfe598c3fcd",
    "stackTrace": ['  File "/var/task/app.py", line 3, in handler\n    return 1 / 0\n'],
}
NODE_BODY = {  # aws-lambda-ric, with no error-type header on invocation errors
    "errorType": "TypeError", "errorMessage": "kaboom",
    "trace": ["TypeError: kaboom", "    at Runtime.handler (file:///var/task/index.mjs:2:9)"],
}


def test_the_python_clients_body() -> None:
    error = parse_function_error(json.dumps(PYTHON_BODY).encode(), None, "invocation")

    assert error.error_type == "ZeroDivisionError"
    assert error.error_message == "division by zero"
    assert error.stack_trace == PYTHON_BODY["stackTrace"]


def test_the_node_clients_trace_becomes_the_stack_trace() -> None:
    error = parse_function_error(json.dumps(NODE_BODY).encode(), None, "invocation")

    assert error.error_type == "TypeError"
    assert error.error_message == "kaboom"
    assert error.stack_trace == NODE_BODY["trace"]
    assert error.model_dump() == {"errorType": "TypeError", "errorMessage": "kaboom",
                                  "stackTrace": NODE_BODY["trace"]}


def test_the_rust_clients_body_keeps_its_own_type_over_the_header() -> None:
    body = b'{"errorType":"alloc::string::String","errorMessage":"bad input"}'

    error = parse_function_error(body, "Unhandled", "invocation")

    assert error.error_type == "alloc::string::String"
    assert error.error_message == "bad input"
    assert error.stack_trace == []


def test_the_header_names_the_type_when_the_body_does_not() -> None:
    error = parse_function_error(b'{"errorMessage":"no type in here"}', "Runtime.Custom", "init")

    assert error.error_type == "Runtime.Custom"
    assert error.error_message == "no type in here"


@pytest.mark.parametrize(("header", "phase", "expected"), [
    (None, "invocation", "Function.Unknown"),
    (None, "init", "Runtime.Unknown"),
    ("Unhandled", "invocation", "Unhandled"),
])
def test_a_non_json_body_becomes_the_message(header: str | None, phase: str,
                                             expected: str) -> None:
    error = parse_function_error(b"Traceback: it broke\nbadly", header, phase)

    assert error.error_type == expected
    assert error.error_message == "Traceback: it broke\nbadly"
    assert error.stack_trace == []


def test_an_error_cause_body_keeps_the_caller_payload() -> None:
    # Content-Type application/vnd.aws.lambda.error.cause+json (docs/runtime-api.md#error-bodies).
    body = {**PYTHON_BODY, "errorCause": {"working_directory": "/var/task", "paths": [],
                                          "exceptions": [{"type": "ZeroDivisionError"}]}}

    error = parse_function_error(json.dumps(body).encode(), None, "invocation")

    assert error.model_dump() == {"errorType": "ZeroDivisionError",
                                  "errorMessage": "division by zero",
                                  "stackTrace": PYTHON_BODY["stackTrace"]}


@pytest.mark.parametrize("body", [b"", b"[1, 2]", b'"a string"', b"null", b"\xff\xfe\x00"])
def test_bodies_that_are_not_objects_become_the_message(body: bytes) -> None:
    error = parse_function_error(body, None, "invocation")

    assert error.error_type == "Function.Unknown"
    assert error.error_message == body.decode("utf-8", "replace")


def test_odd_field_types_are_kept_readable() -> None:
    body = {"errorType": 7, "errorMessage": {"nested": True},
            "stackTrace": ["frame", {"file": "x.js"}, 3]}

    error = parse_function_error(json.dumps(body).encode(), "Unhandled", "invocation")

    assert error.error_type == "Unhandled"
    assert error.error_message == '{"nested": true}'
    assert error.stack_trace == ["frame", '{"file": "x.js"}', "3"]


def test_a_missing_message_is_empty_not_null() -> None:
    error = parse_function_error(b'{"errorType":"E"}', None, "invocation")

    assert error.error_message == ""


def test_a_trace_given_as_one_string_is_split_into_lines() -> None:
    body = {"errorType": "E", "errorMessage": "m", "stackTrace": "line one\nline two"}

    error = parse_function_error(json.dumps(body).encode(), None, "invocation")

    assert error.stack_trace == ["line one", "line two"]


def test_a_huge_non_json_body_is_cut() -> None:
    error = parse_function_error(b"x" * 1_000_000, None, "invocation")

    assert len(error.error_message) == 64 * 1024


def test_a_body_nested_too_deep_is_taken_as_text() -> None:
    body = b"[" * 100_000 + b"]" * 100_000

    error = parse_function_error(body, None, "invocation")

    assert error.error_type == "Function.Unknown"


def test_a_body_with_an_overlong_integer_is_taken_as_text() -> None:
    # Python refuses integers over 4300 digits with a ValueError that is no JSONDecodeError.
    body = b'{"errorType":"E","errorMessage":"m","n":' + b"1" * 5000 + b"}"

    error = parse_function_error(body, None, "invocation")

    assert error.error_type == "Function.Unknown"
    assert error.error_message.startswith('{"errorType":"E"')


def test_lone_surrogates_are_replaced() -> None:
    # Valid JSON, but "\ud800" decodes to a string no UTF-8 output (the result) can hold.
    body = b'{"errorType":"E\\ud800","errorMessage":"m\\udfff","stackTrace":["f\\ud800"]}'

    error = parse_function_error(body, None, "invocation")

    for text in (error.error_type, error.error_message, *error.stack_trace):
        text.encode()
    assert error.error_message == "m?"


# --- InvocationState --------------------------------------------------------------------------

RID = "8476a536-e9f4-11e8-9739-2dfe598c3fcd"
INVOCATION = Invocation(RID, b"{}", 1, "arn:aws:lambda:us-east-1:000000000000:function:udf")
ERROR = parse_function_error(b'{"errorType":"E","errorMessage":"m"}', None, "init")


def _state(deadline_s: float = 60.0) -> InvocationState:
    return InvocationState(INVOCATION, deadline=time.monotonic() + deadline_s,
                           on_change=lambda: None)


def _refusal(action: Callable[[], object]) -> type[Refusal]:
    """The kind of refusal `action` returned (the server renders each as its HTTP reply)."""
    refusal = action()
    assert isinstance(refusal, NotAllowed | InvalidRequestId | TooLate)
    return type(refusal)


def _in(phase: Phase) -> InvocationState:
    """A state brought to `phase` through its own transitions."""
    state = _state()
    if phase is Phase.INIT_FAILED:
        state.record_init_error(ERROR)
    elif phase is not Phase.INIT:
        state.take_next()
        if phase is Phase.ANSWERED:
            state.record_answer(RID, Response(b"{}", "application/json"))
        elif phase is Phase.CLOSED:
            state.close()
    assert state.phase == phase
    return state


def test_the_happy_path() -> None:
    state = _state()

    assert state.take_next() == INVOCATION
    state.check_answer(RID)
    state.record_answer(RID, Response(b"1", "application/json"))

    assert state.next_at is not None
    assert state.answered_at is not None
    assert state.next_at <= state.answered_at
    assert state.close() == Response(b"1", "application/json")
    assert state.phase is Phase.CLOSED


@pytest.mark.parametrize(("phase", "expected"), [
    (Phase.INVOKED, NotAllowed),
    (Phase.INIT_FAILED, NotAllowed),
])
def test_next_is_refused(phase: Phase, expected: type[Refusal]) -> None:
    assert _refusal(_in(phase).take_next) == expected


@pytest.mark.parametrize("phase", [Phase.ANSWERED, Phase.CLOSED])
def test_next_is_held_once_the_invocation_is_over(phase: Phase) -> None:
    assert isinstance(_in(phase).take_next(), Hold)


@pytest.mark.parametrize("phase", [Phase.ANSWERED, Phase.CLOSED])
def test_a_held_next_after_the_answer_tells_the_driver(phase: Phase) -> None:
    changes: list[bool] = []
    state = InvocationState(INVOCATION, deadline=time.monotonic() + 60,
                            on_change=lambda: changes.append(state.back_in_next))
    state.take_next()
    state.record_answer(RID, Response(b"{}", "application/json"))
    if phase is Phase.CLOSED:
        state.close()
    assert not state.back_in_next

    state.take_next()

    assert changes == [True]  # the driver is woken, and sees it
    assert state.back_in_next


def test_a_runtime_that_never_answered_is_not_back_in_next() -> None:
    state = _in(Phase.CLOSED)

    state.take_next()

    assert not state.back_in_next


@pytest.mark.parametrize(("phase", "expected"), [
    (Phase.INIT, InvalidRequestId),
    (Phase.INIT_FAILED, NotAllowed),
    (Phase.ANSWERED, NotAllowed),
    (Phase.CLOSED, NotAllowed),
])
def test_an_answer_is_refused(phase: Phase, expected: type[Refusal]) -> None:
    state = _in(phase)
    answer = state.answer

    assert _refusal(lambda: state.record_answer(RID, Response(b"2", "x"))) == expected
    assert _refusal(lambda: state.check_answer(RID)) == expected
    assert state.answer == answer
    assert state.phase is phase


@pytest.mark.parametrize("phase", list(Phase))
def test_an_answer_for_another_id_is_refused(phase: Phase) -> None:
    state = _in(phase)

    assert _refusal(lambda: state.check_answer("another-id")) == InvalidRequestId
    assert state.phase is phase


@pytest.mark.parametrize("phase", [Phase.INVOKED, Phase.INIT_FAILED, Phase.ANSWERED,
                                   Phase.CLOSED])
def test_init_error_is_refused_after_init(phase: Phase) -> None:
    state = _in(phase)
    answer = state.answer

    assert _refusal(lambda: state.record_init_error(ERROR)) == NotAllowed
    assert state.answer == answer


def test_init_error_is_recorded() -> None:
    state = _in(Phase.INIT_FAILED)

    assert state.answer == PostedError("init", ERROR)
    assert state.next_at is None


def test_a_late_answer_is_a_timeout() -> None:
    state = _state(deadline_s=-1.0)
    state.take_next()

    assert _refusal(lambda: state.record_answer(RID, Response(b"{}", "x"))) is TooLate
    assert state.answer == LateAnswer()
    assert state.phase is Phase.CLOSED


def test_a_held_next_stays_held_when_closed_and_ends_on_release() -> None:
    state = _in(Phase.ANSWERED)
    released = threading.Event()

    def held() -> None:
        state.hold()
        released.set()

    thread = threading.Thread(target=held)
    thread.start()
    state.close()

    assert not released.is_set()
    assert thread.is_alive()  # the child is stopped while it waits, not woken by the close
    state.release()
    thread.join()
    assert released.is_set()
