"""The one place that turns an attempt's outcome into the result returned to the control plane."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from runner.errors import ResponseTooLargeError, RunnerError
from runner.models import BundleInfo, ErrorInfo, FunctionErrorBody, LogsInfo, TaskResult
from runner.runtime_api.state import Response
from runner.settings import LAMBDA_RESPONSE_LIMIT

__all__ = [
    "MESSAGE_LIMIT",
    "STACK_TRACE_LIMIT",
    "build",
    "encoded_size",
    "error_info",
    "response_fields",
]

#: Longest error message kept in a result (a function's own message can be megabytes).
MESSAGE_LIMIT = 8 * 1024
#: Room for a function error's stack trace in a result (a runtime may post megabytes of it).
STACK_TRACE_LIMIT = 64 * 1024


def error_info(error: RunnerError) -> ErrorInfo:
    """The result's `error` object for `error`."""
    function_error = getattr(error, "function_error", None)
    return ErrorInfo(type=error.error_type, message=error.message[:MESSAGE_LIMIT],
                     retryable=error.is_retryable,
                     function_error=None if function_error is None else _bounded(function_error))


def _bounded(error: FunctionErrorBody) -> FunctionErrorBody:
    """The posted error cut to what a result can carry, its first stack frames kept."""
    frames: list[str] = []
    room = STACK_TRACE_LIMIT
    for index, frame in enumerate(error.stack_trace):
        kept = frame[:MESSAGE_LIMIT]
        room -= len(kept) + 4  # its quotes and separator count too (think of 1M empty frames)
        if room < 0:
            frames.append(f"... {len(error.stack_trace) - index} more lines not kept")
            break
        frames.append(kept)
    return FunctionErrorBody(error_type=error.error_type[:MESSAGE_LIMIT],
                             error_message=error.error_message[:MESSAGE_LIMIT],
                             stack_trace=frames)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 is JSON, but as a float it would go out as Infinity
        raise ValueError(f"{text} does not fit a float")
    return value


def response_fields(response: Response) -> dict[str, Any]:
    """A JSON body comes back parsed in `response`; anything else base64 in `response_base64`."""
    try:
        return {"response": json.loads(response.body, parse_constant=_reject_constant,
                                       parse_float=_finite_float)}
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _base64_fields(response)


def _base64_fields(response: Response) -> dict[str, Any]:
    return {"response_base64": base64.b64encode(response.body).decode("ascii")}


def build(*, task_id: str | None, attempt: int | None, response: Response | None = None,
          error: RunnerError | None = None, bundle: BundleInfo | None = None,
          timings_ms: Mapping[str, int] | None = None, logs: LogsInfo | None = None) -> TaskResult:
    """A result for one attempt: succeeded with `response`, or failed with `error`."""
    common: dict[str, Any] = {
        "task_id": task_id, "attempt": attempt, "bundle": bundle,
        "timings_ms": dict(timings_ms or {}), "logs": logs or LogsInfo(),
    }
    if error is None and response is not None:
        result, size = _succeeded(common, response)
        if size <= LAMBDA_RESPONSE_LIMIT:
            return result
        error = ResponseTooLargeError(
            f"The response takes {size} bytes inside the result, over the runner's own "
            f"{LAMBDA_RESPONSE_LIMIT}-byte Lambda response limit.")
    if error is None:
        raise ValueError("a result needs a response or an error")
    return TaskResult(status="failed", error=error_info(error), **common)


def _succeeded(common: dict[str, Any], response: Response) -> tuple[TaskResult, int]:
    """The succeeded result and its size, the response as JSON if the result can carry it so."""
    fields = response_fields(response)
    try:
        result = TaskResult(status="succeeded", **common, **fields)
        return result, encoded_size(result)
    # JSON that a result cannot carry: nested deeper than the model validates, or holding a
    # lone surrogate ("\ud800"), which no UTF-8 output can encode.
    except (ValidationError, UnicodeEncodeError):
        if "response" not in fields:
            raise
    result = TaskResult(status="succeeded", **common, **_base64_fields(response))
    return result, encoded_size(result)


def encoded_size(result: TaskResult) -> int:
    """Bytes the result takes as the Python runtime serialises it (UTF-8, ensure_ascii off)."""
    return len(json.dumps(result.model_dump(mode="json"), ensure_ascii=False).encode())
