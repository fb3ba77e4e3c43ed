"""The one place that turns an attempt's outcome into the result returned to the control plane."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from runner.errors import ResponseTooLargeError, RunnerError
from runner.models import BundleInfo, ErrorInfo, LogsInfo, TaskResult
from runner.runtime_api import Response
from runner.settings import LAMBDA_RESPONSE_LIMIT

#: Longest error message kept in a result (a function's own message can be megabytes).
MESSAGE_LIMIT = 8 * 1024


def error_info(error: RunnerError) -> ErrorInfo:
    """The result's `error` object for `error`."""
    function_error = getattr(error, "function_error", None)
    return ErrorInfo(type=error.error_type, message=error.message[:MESSAGE_LIMIT],
                     retryable=error.is_retryable, function_error=function_error)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def response_fields(response: Response) -> dict[str, Any]:
    """A JSON body comes back parsed in `response`; anything else base64 in `response_base64`."""
    try:
        return {"response": json.loads(response.body, parse_constant=_reject_constant)}
    except (UnicodeDecodeError, ValueError, RecursionError):
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
        result = TaskResult(status="succeeded", **common, **response_fields(response))
        size = encoded_size(result)
        if size <= LAMBDA_RESPONSE_LIMIT:
            return result
        error = ResponseTooLargeError(
            f"The response takes {size} bytes inside the result, over the runner's own "
            f"{LAMBDA_RESPONSE_LIMIT}-byte Lambda response limit.")
    if error is None:
        raise ValueError("a result needs a response or an error")
    return TaskResult(status="failed", error=error_info(error), **common)


def encoded_size(result: TaskResult) -> int:
    """Bytes the result takes as the Python runtime serialises it (UTF-8, ensure_ascii off)."""
    return len(json.dumps(result.model_dump(mode="json"), ensure_ascii=False).encode())
