"""`runner.result.build`: the one place an outcome becomes the result the control plane reads."""

from __future__ import annotations

import base64
import json

import pytest

from runner import result
from runner.errors import (
    ExitError,
    FunctionError,
    InvalidPayloadError,
    QueryFailedError,
    TimedOutError,
)
from runner.models import BundleInfo, FunctionErrorBody, LogsInfo, TaskResult
from runner.runtime_api.state import Response
from runner.settings import LAMBDA_RESPONSE_LIMIT


def _build(body: bytes, content_type: str = "application/json") -> TaskResult:
    return result.build(task_id="t-1", attempt=2, response=Response(body, content_type))


def _wire(built: TaskResult) -> str:
    """The result as the Python runtime sends it back (it must always be encodable)."""
    return json.dumps(built.model_dump(mode="json"), ensure_ascii=False, allow_nan=False)


@pytest.mark.parametrize(("body", "expected"), [
    (b'{"a": [1, 2.5, "\\u00e9"], "b": null}', {"a": [1, 2.5, "é"], "b": None}),
    (b'"just a string"', "just a string"),
    (b"42", 42),
    (b" [true, false] \n", [True, False]),
    (b"null", None),
    ("{\"é\": \"ü\"}".encode(), {"é": "ü"}),
])
def test_a_json_body_comes_back_parsed(body: bytes, expected: object) -> None:
    built = _build(body)

    assert built.status == "succeeded"
    assert built.response == expected
    assert built.response_base64 is None
    assert built.error is None
    _wire(built)


@pytest.mark.parametrize("body", [
    b"Echoing request: '{}'",  # text
    b"\x89PNG\r\n\x1a\n\x00\x00",  # binary
    b"\xff\xfe{}",  # not UTF-8
    b"",  # nothing at all
    b"NaN", b"[1, Infinity]", b"-Infinity",  # Python's json reads these; JSON has no such thing
    b"[1e400]",  # valid JSON, but a float cannot carry it (it would come back as Infinity)
    b'{"a": 1} trailing',
    b"1" * 5000,  # Python refuses integers over 4300 digits
    b'"\\ud800"',  # a lone surrogate: valid JSON text that no UTF-8 output can hold
    b'"\xed\xa0\x80"',  # the same, encoded raw
    b"[" * 300 + b"]" * 300,  # valid JSON nested deeper than the result model validates
    b"[" * 100_000 + b"]" * 100_000,  # deeper than the parser recurses
])
def test_anything_else_comes_back_base64(body: bytes) -> None:
    built = _build(body, "application/octet-stream")

    assert built.status == "succeeded"
    assert built.response is None
    assert built.response_base64 is not None
    assert base64.b64decode(built.response_base64) == body
    _wire(built)


def test_a_result_that_would_not_fit_the_lambda_response_fails() -> None:
    body = b"\x00" * (LAMBDA_RESPONSE_LIMIT * 3 // 4)  # base64 takes it over the limit

    built = _build(body, "application/octet-stream")

    assert built.status == "failed"
    assert built.error is not None
    assert built.error.type == "Function.ResponseSizeTooLarge"
    assert str(LAMBDA_RESPONSE_LIMIT) in built.error.message
    assert built.response is None
    assert built.response_base64 is None


def test_a_result_just_inside_the_lambda_response_fits() -> None:
    empty = result.encoded_size(_build(b'""'))
    body = json.dumps("x" * (LAMBDA_RESPONSE_LIMIT - empty)).encode()

    built = _build(body)

    assert built.status == "succeeded"
    assert result.encoded_size(built) == LAMBDA_RESPONSE_LIMIT
    assert len(_wire(built).encode()) == LAMBDA_RESPONSE_LIMIT


def test_a_failed_result_carries_the_function_error() -> None:
    posted = FunctionErrorBody(error_type="ValueError", error_message="boom",
                               stack_trace=['  File "h.py", line 1, in h\n'])
    logs = LogsInfo(tail="last words\n", bytes=11, truncated=False)

    built = result.build(task_id="t-1", attempt=1, error=FunctionError(
        "ValueError: boom", function_error=posted), timings_ms={"init": 3, "invoke": 1},
        logs=logs)

    assert built.status == "failed"
    assert built.error is not None
    assert built.error.model_dump(mode="json") == {
        "type": "Function.Error", "message": "ValueError: boom", "retryable": False,
        "function_error": {"errorType": "ValueError", "errorMessage": "boom",
                           "stackTrace": ['  File "h.py", line 1, in h\n']}}
    assert built.timings_ms == {"init": 3, "invoke": 1}
    assert built.logs == logs
    assert built.response is None


def test_a_huge_function_error_is_cut_to_fit() -> None:
    posted = FunctionErrorBody(error_type="E" * 100_000, error_message="m" * 6_000_000,
                               stack_trace=["frame " * 10_000] * 2_000 + [""] * 500_000)

    built = result.build(task_id="t-1", attempt=1, error=FunctionError(
        "E: " + "m" * 6_000_000, function_error=posted))

    assert built.error is not None
    assert built.error.function_error is not None
    assert len(built.error.message) == result.MESSAGE_LIMIT
    assert len(built.error.function_error.error_message) == result.MESSAGE_LIMIT
    assert len(built.error.function_error.error_type) <= result.MESSAGE_LIMIT
    frames = built.error.function_error.stack_trace
    assert 0 < len(frames) < 100
    assert frames[-1].endswith("more lines not kept")
    assert result.encoded_size(built) < 128 * 1024


@pytest.mark.parametrize(("error", "retryable"), [
    (ExitError("RequestId: x Error: Runtime exited with error: exit status 3"), False),
    (TimedOutError("RequestId: x Error: Task timed out after 1.00 seconds"), False),
    (InvalidPayloadError("bad"), False),
    (QueryFailedError("503 from the Query Service", retryable=True), True),
])
def test_each_error_keeps_its_type_and_retryability(error: ExitError, retryable: bool) -> None:
    built = result.build(task_id=None, attempt=None, error=error)

    assert built.error is not None
    assert built.error.type == error.error_type
    assert built.error.retryable is retryable
    assert built.error.function_error is None


def test_an_error_wins_over_a_response() -> None:
    built = result.build(task_id="t", attempt=1, response=Response(b"{}", "application/json"),
                         error=TimedOutError("late"))

    assert built.status == "failed"
    assert built.response is None


def test_the_bundle_is_reported() -> None:
    bundle = BundleInfo(sha256="a" * 64, bytes=123, cache_hit=True)

    built = result.build(task_id="t", attempt=1, response=Response(b"1", "application/json"),
                         bundle=bundle)

    assert built.bundle == bundle


def test_a_result_needs_a_response_or_an_error() -> None:
    with pytest.raises(ValueError, match="needs a response or an error"):
        result.build(task_id="t", attempt=1)
