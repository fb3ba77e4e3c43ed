"""What a runtime reports as its function's error, normalised whichever client sent it.

The Python client sends `stackTrace` and no type header, the Node client `trace` and no header
on invocation errors, Rust the header; bash bootstraps send whatever they like
(docs/runtime-api.md#error-bodies). A stream that fails midway names its error in trailers, the
body base64-encoded (docs/runtime-api.md#streaming).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from runner.models import FunctionErrorBody

__all__ = ["parse_function_error", "stream_error"]

#: Longest error message kept from a non-JSON error body.
_RAW_ERROR_KEEP = 64 * 1024


def parse_function_error(body: bytes, header_type: str | None, phase: str) -> FunctionErrorBody:
    """Normalise an error body posted in `phase` ("init" or "invocation")."""
    fallback_type = header_type or ("Runtime.Unknown" if phase == "init" else "Function.Unknown")
    try:
        data = json.loads(body)
    # ValueError, not only JSONDecodeError: an integer over 4300 digits is refused with it.
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        text = body[:_RAW_ERROR_KEEP].decode("utf-8", "replace")
        return FunctionErrorBody(error_type=fallback_type, error_message=text)
    error_type = data.get("errorType")
    message = data.get("errorMessage")
    trace = data.get("stackTrace", data.get("trace"))
    return FunctionErrorBody(
        error_type=_text(error_type) if isinstance(error_type, str) and error_type
        else fallback_type,
        error_message=_text(message),
        stack_trace=_trace_lines(trace),
    )


def stream_error(error_type: str, encoded_body: str) -> FunctionErrorBody:
    """The error a stream's trailers name: its type, and its body base64-encoded."""
    try:
        raw = base64.b64decode(encoded_body)
    except (binascii.Error, ValueError):
        raw = b""
    return parse_function_error(raw, error_type, "invocation")


def _text(value: Any) -> str:
    """A field as text any UTF-8 output can hold: JSON may carry lone surrogates ("\\ud800")."""
    text = value if isinstance(value, str) else "" if value is None else json.dumps(value)
    return text.encode("utf-8", "replace").decode("utf-8")


def _trace_lines(trace: Any) -> list[str]:
    if isinstance(trace, str):
        return _text(trace).splitlines()
    if isinstance(trace, list):
        return [_text(item) for item in trace]
    return []
