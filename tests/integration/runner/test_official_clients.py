"""The official runtime clients, unmodified, each complete one invocation against the emulation.

Python's `awslambdaric` (from PyPI, as a custom-runtime bootstrap), a bash + curl bootstrap in
the style of AWS's custom-runtime tutorial, and a std-only Rust bootstrap built with cargo: each
succeeds, fails in its handler and fails at init. Each fixture prints what its client received,
which is checked against what the runner sent; the result is checked as the control plane sees it.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest

from runner import runtimes
from runner.settings import Settings
from tests.support import fixture_bundles

TIMEOUT_MS = 10_000
EVENT = {"answer": 42, "text": "héllo"}
TRACE_ID = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
CLIENT_CONTEXT = '{"custom":{"colour":"blue"},"client":{},"env":{}}'
COGNITO = '{"cognitoIdentityId":"us-east-1:identity-1","cognitoIdentityPoolId":"us-east-1:pool-1"}'


@pytest.fixture(scope="session")
def python_ric_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture_bundles.build_python_ric(tmp_path_factory.mktemp("python-ric") / "bundle")


@pytest.fixture(scope="session")
def rust_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rust")
    return fixture_bundles.build_rust(root / "bundle", root / "target")


def _invoke_with_context(bundle: Path, settings: Settings, handler: str) -> tuple[
        fixture_bundles.Run, int, int]:
    """Invoke with every optional header set; also returns the clock before and after, in ms."""
    before = int(time.time() * 1000)
    run = fixture_bundles.invoke(bundle, settings, handler=handler,
                                 event=json.dumps(EVENT).encode(),
                                 timeout_ms=TIMEOUT_MS, trace_id=TRACE_ID,
                          client_context=CLIENT_CONTEXT, cognito_identity=COGNITO)
    return run, before, int(time.time() * 1000)


def _check_deadline(deadline_ms: int, run: fixture_bundles.Run, before: int, after: int) -> None:
    """The deadline the client saw is the runner's: the invocation's start plus its timeout."""
    assert deadline_ms == run.outcome.deadline_ms
    assert before + TIMEOUT_MS <= deadline_ms <= after + TIMEOUT_MS


def _check_timings(run: fixture_bundles.Run, *, invoked: bool) -> None:
    timings = run.result.timings_ms
    assert "init" in timings
    assert ("invoke" in timings) is invoked


def _function_error(run: fixture_bundles.Run, error_type: str) -> dict[str, Any]:
    assert run.result.status == "failed"
    assert run.result.error is not None
    assert run.result.error.type == error_type
    assert run.result.error.retryable is False
    assert run.result.error.function_error is not None
    dumped = run.result.model_dump(mode="json")["error"]["function_error"]
    assert set(dumped) == {"errorType", "errorMessage", "stackTrace"}
    return dumped  # type: ignore[no-any-return]


# --- Python: awslambdaric ---------------------------------------------------------------------

def test_awslambdaric_success(python_ric_bundle: Path, settings: Settings) -> None:
    run, before, after = _invoke_with_context(python_ric_bundle, settings, "handler.echo")

    assert run.result.status == "succeeded", run.result
    got = run.got()
    assert got["request_id"] == run.outcome.request_id
    _check_deadline(got["deadline_ms"], run, before, after)
    assert 0 < got["remaining_ms"] <= TIMEOUT_MS
    assert got["function_arn"] == runtimes.function_arn(settings)
    assert got["function_name"] == settings.function_name
    assert got["memory_limit_in_mb"] == str(settings.function_memory_mb)
    assert got["trace_id"] == TRACE_ID
    assert got["client_context_custom"] == {"colour": "blue"}
    assert got["cognito_identity_id"] == "us-east-1:identity-1"
    assert run.result.response == {"received": got, "event": EVENT}
    _check_timings(run, invoked=True)


def test_awslambdaric_handler_error(python_ric_bundle: Path, settings: Settings) -> None:
    run, before, after = _invoke_with_context(python_ric_bundle, settings, "handler.fail")

    got = run.got()
    assert got["request_id"] == run.outcome.request_id
    _check_deadline(got["deadline_ms"], run, before, after)
    error = _function_error(run, "Function.Error")
    # The Python client sends no error-type header: the type comes from the body.
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "handler failed on purpose"
    assert any("handler.py" in frame and "in fail" in frame for frame in error["stackTrace"])
    assert run.result.error is not None
    assert run.result.error.message == "ValueError: handler failed on purpose"
    _check_timings(run, invoked=True)


def test_awslambdaric_init_error(python_ric_bundle: Path, settings: Settings) -> None:
    run = fixture_bundles.invoke(python_ric_bundle, settings, handler="broken.handler",
                          timeout_ms=TIMEOUT_MS)

    error = _function_error(run, "Runtime.InitError")
    assert error["errorType"] == "RuntimeError"
    assert error["errorMessage"] == "init failed on purpose"
    assert any("broken.py" in frame for frame in error["stackTrace"])
    assert run.printed("GOT ") == []
    _check_timings(run, invoked=False)


# --- bash + curl: AWS's tutorial bootstrap ----------------------------------------------------

def _bash_got(run: fixture_bundles.Run) -> dict[str, str]:
    """The `Lambda-Runtime-*` headers the tutorial bootstrap printed, by lower-case name."""
    headers = {}
    for line in run.printed("GOT "):
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    return headers


def test_bash_success(settings: Settings) -> None:
    run, before, after = _invoke_with_context(fixture_bundles.bash_bundle("tutorial"), settings,
                                              "function.handler")

    assert run.result.status == "succeeded", run.result
    got = _bash_got(run)
    assert got["lambda-runtime-aws-request-id"] == run.outcome.request_id
    _check_deadline(int(got["lambda-runtime-deadline-ms"]), run, before, after)
    assert got["lambda-runtime-invoked-function-arn"] == runtimes.function_arn(settings)
    assert got["lambda-runtime-trace-id"] == TRACE_ID
    assert got["lambda-runtime-client-context"] == CLIENT_CONTEXT
    assert got["lambda-runtime-cognito-identity"] == COGNITO
    # The tutorial answers with text, not JSON: it comes back base64.
    assert run.result.response is None
    assert run.result.response_base64 is not None
    event = json.dumps(EVENT)
    assert base64.b64decode(run.result.response_base64).decode() == f"Echoing request: '{event}'"
    _check_timings(run, invoked=True)


def test_bash_handler_error(settings: Settings) -> None:
    run, before, after = _invoke_with_context(fixture_bundles.bash_bundle("tutorial"), settings,
                                              "function.fail")

    got = _bash_got(run)
    assert got["lambda-runtime-aws-request-id"] == run.outcome.request_id
    _check_deadline(int(got["lambda-runtime-deadline-ms"]), run, before, after)
    error = _function_error(run, "Function.Error")
    assert error == {"errorType": "HandlerFailedException",
                     "errorMessage": "Error running the handler.", "stackTrace": []}
    _check_timings(run, invoked=True)


def test_bash_init_error(settings: Settings) -> None:
    run = fixture_bundles.invoke(fixture_bundles.bash_bundle("tutorial"), settings,
                                 handler="missing.handler", timeout_ms=TIMEOUT_MS)

    error = _function_error(run, "Runtime.InitError")
    assert error == {"errorType": "InvalidFunctionException",
                     "errorMessage": "Failed to load function.", "stackTrace": []}
    assert run.printed("GOT ") == []
    _check_timings(run, invoked=False)


# --- Rust (std only, built from source) -------------------------------------------------------

def test_rust_success(rust_bundle: Path, settings: Settings) -> None:
    run, before, after = _invoke_with_context(rust_bundle, settings, "echo")

    assert run.result.status == "succeeded", run.result
    got = run.got()
    assert got["request_id"] == run.outcome.request_id
    _check_deadline(int(got["deadline_ms"]), run, before, after)
    assert got["function_arn"] == runtimes.function_arn(settings)
    assert got["trace_id"] == TRACE_ID
    assert got["client_context"] == CLIENT_CONTEXT
    assert got["cognito_identity"] == COGNITO
    assert got["content_type"] == "application/json"
    assert run.result.response == {"received": got, "event": EVENT}
    _check_timings(run, invoked=True)


def test_rust_success_without_optional_headers(rust_bundle: Path, settings: Settings) -> None:
    run = fixture_bundles.invoke(rust_bundle, settings, handler="echo", timeout_ms=TIMEOUT_MS)

    assert run.result.status == "succeeded", run.result
    got = run.got()
    assert got["trace_id"] is None
    assert got["client_context"] is None
    assert got["cognito_identity"] is None
    assert run.result.response == {"received": got, "event": {}}


def test_rust_handler_error(rust_bundle: Path, settings: Settings) -> None:
    run, before, after = _invoke_with_context(rust_bundle, settings, "error")

    got = run.got()
    assert got["request_id"] == run.outcome.request_id
    _check_deadline(int(got["deadline_ms"]), run, before, after)
    error = _function_error(run, "Function.Error")
    # Sent with `Lambda-Runtime-Function-Error-Type: Unhandled`; the body's own type is kept.
    assert error == {"errorType": "fixture::HandlerError",
                     "errorMessage": "handler failed on purpose", "stackTrace": []}
    _check_timings(run, invoked=True)


def test_rust_init_error(rust_bundle: Path, settings: Settings) -> None:
    run = fixture_bundles.invoke(rust_bundle, settings, handler="init-error", timeout_ms=TIMEOUT_MS)

    error = _function_error(run, "Runtime.InitError")
    assert error == {"errorType": "Runtime.FixtureInitError",
                     "errorMessage": "init failed on purpose", "stackTrace": []}
    assert run.printed("GOT ") == []
    _check_timings(run, invoked=False)
