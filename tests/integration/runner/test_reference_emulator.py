"""Differential: every fixture bundle under AWS's Runtime Interface Emulator and under the runner.

Both run the same bootstrap with the same environment (the one the runner builds); only the
Runtime API server differs. What the caller gets must match: the response bytes, the posted
error's type and message, and the context the function saw, once the values each server picks
for itself (request id, deadline, ARN, log stream, port) are masked.

Where the RIE is known to differ from Lambda, the test names the deviation (`Deviation`, also
listed in docs/runtime-api-deviations.md), checks that the RIE still shows it, and asserts
Lambda's documented behaviour of the runner instead.
"""

from __future__ import annotations

import enum
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runner import runtimes
from runner.containment.workdir import WorkDirs
from runner.runtimes import nodejs
from runner.settings import Settings
from tests.support import fixture_bundles, rie, toolchains

EVENT = {"answer": 42, "text": "héllo"}
TRACE_ID = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
CLIENT_CONTEXT = '{"custom":{"colour":"blue"}}'
NODE_HANDLERS = fixture_bundles.FIXTURES / "node" / "handlers"
NODE_LAYER = Path(__file__).resolve().parents[3] / "layers" / "nodejs" / "build"
#: Values each server chooses for itself, masked before comparing what the function saw.
OWN_VALUES = frozenset({
    "request_id", "deadline_ms", "remaining_ms", "function_arn", "log_stream_name",
    "AWS_LAMBDA_RUNTIME_API", "url",
})
#: What the RIE leaves out (Deviation.NO_TRACE), left out of the comparison once checked.
TRACE_VALUES = frozenset({"trace_id", "_X_AMZN_TRACE_ID"})
MASK = "<masked>"


class Deviation(enum.Enum):
    """Where the RIE differs from Lambda; docs/runtime-api-deviations.md has the table."""

    FUNCTION_ERROR_STATUS = "a function error comes back without X-Amz-Function-Error"
    ERROR_THEN_EXIT = "a runtime that posts its error and then exits (a Go panic) answers 502"
    CONTENT_TYPE = "the runtime's Content-Type is lost (Go's sniffer picks one)"
    EXIT_STATUS = "a runtime that dies answers 502, not 200 with X-Amz-Function-Error"
    TIMEOUT_TEXT = "a timeout answers 200 with plain text, not the Sandbox.Timedout JSON"
    NO_TRACE = "the runtime is not given the caller's trace id"
    DROPS_ERROR_TRAILERS = "a failure named in HTTP trailers is dropped: the partial body wins"
    SIGNAL_NAME = "(the runner's, on purpose) the signal's name follows Lambda's exit message"


@dataclass(frozen=True)
class Case:
    """One fixture, and how its invocation ends."""

    bundle: Callable[[Path], Path]  # given a scratch dir, the bundle folder
    handler: str | None
    #: "response", "error", "error-then-exit" (posted, then exited), "trailer-error" (named in
    #: the trailers of a response), "exit" (died without a word) or "timeout"
    ends: str
    runtime: str = "provided"
    event: Any = None  # EVENT unless given
    timeout_s: int = 10


def _rust(variant: str) -> Callable[[Path], Path]:
    return lambda _: getattr(toolchains.rust_bundles(), variant).folder


def _go(name: str) -> Callable[[Path], Path]:
    return lambda _: toolchains.go_bundles()[name].folder


def _as_is(folder: Path) -> Callable[[Path], Path]:
    return lambda _: folder


def _python_ric(scratch: Path) -> Path:
    return fixture_bundles.build_python_ric(scratch / "python-ric")


CASES = {
    "rust-echo": Case(_rust("abort"), "echo", "response"),
    "rust-error": Case(_rust("abort"), "error", "error"),
    "rust-graceful-shutdown": Case(_rust("abort"), "graceful", "response"),
    "rust-panic-abort": Case(_rust("abort"), "panic", "exit"),
    "rust-panic-unwind": Case(_rust("unwind"), "panic", "error"),
    "rust-1mib": Case(_rust("abort"), "big", "response"),
    "rust-stream": Case(_rust("abort"), "stream", "response"),
    "rust-stream-error": Case(_rust("abort"), "stream-error", "response"),
    "go-echo": Case(_go("echo"), None, "response"),
    "go-error": Case(_go("error"), None, "error"),
    "go-panic": Case(_go("panic"), None, "error-then-exit"),
    "go-deadline": Case(_go("deadline"), None, "response"),
    "go-timeout": Case(_go("deadline"), None, "timeout", event={"wait": True}, timeout_s=1),
    "go-stream": Case(_go("stream"), None, "response", event={}),
    "go-sigterm": Case(_go("sigterm"), None, "response"),
    "go-reader-error": Case(_go("readerror"), None, "trailer-error"),
    "awslambdaric-echo": Case(_python_ric, "handler.echo", "response"),
    "awslambdaric-error": Case(_python_ric, "handler.fail", "error"),
    "bash-tutorial": Case(_as_is(fixture_bundles.bash_bundle("tutorial")), "function.handler",
                          "response"),
    "bash-tutorial-error": Case(_as_is(fixture_bundles.bash_bundle("tutorial")), "function.fail",
                                "error"),
    "node-ric": Case(_as_is(NODE_HANDLERS / "esm-mjs"), "index.handler", "response",
                     runtime="nodejs"),
    "node-ric-stream-error": Case(_as_is(NODE_HANDLERS / "stream-fails"), "index.handler",
                                  "trailer-error", runtime="nodejs"),
    "node-ric-error": Case(_as_is(NODE_HANDLERS / "throws"), "index.handler", "error",
                           runtime="nodejs"),
}


def _comparable(value: Any) -> Any:
    """`value` with each server's own values masked and the trace values (which the RIE does
    not pass, and clients drop when absent) left out."""
    if isinstance(value, dict):
        return {k: MASK if k in OWN_VALUES else _comparable(v)
                for k, v in value.items() if k not in TRACE_VALUES}
    if isinstance(value, list):
        return [_comparable(item) for item in value]
    return value


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _traces(value: Any) -> list[Any]:
    """Every trace value the function reported, wherever it sits in its response."""
    if isinstance(value, dict):
        return [v for k, v in value.items() if k in TRACE_VALUES] + [
            t for v in value.values() for t in _traces(v)]
    if isinstance(value, list):
        return [t for item in value for t in _traces(item)]
    return []


def _under_rie(case: Case, folder: Path, settings: Settings, scratch: Path,
               event: bytes) -> rie.Answer:
    """The bundle run by the RIE with the command and environment the runner gives it."""
    dirs = WorkDirs(scratch / "task", scratch / "home", scratch / "tmp")
    shutil.copytree(folder, dirs.task_root, symlinks=True)
    dirs.home.mkdir()
    dirs.tmp.mkdir()
    task = runtimes.TaskEnvironment(task_id=fixture_bundles.TASK_ID, attempt=1,
                                    token=fixture_bundles.TOKEN)
    spec = runtimes.child_spec(case.runtime, dirs, case.handler, task, settings)
    command = list(spec.argv)
    if case.runtime == "nodejs":
        # With more than one argument the RIE takes the last as _HANDLER: one script instead.
        script = scratch / "node-bootstrap"
        script.write_text("#!/bin/sh\nexec " + " ".join(nodejs.command(settings)) + "\n")
        script.chmod(0o755)
        command = [str(script)]
    with rie.running(command, spec.cwd, spec.env, timeout_s=case.timeout_s) as emulator:
        return emulator.invoke(event, trace_id=TRACE_ID, client_context=CLIENT_CONTEXT)


@pytest.fixture
def settings(work_root: Path) -> Settings:
    """The default settings, with the Node.js layer `make layer` builds."""
    return Settings.from_env({"UDF_RUNNER_WORK_ROOT": str(work_root),
                              "UDF_RUNNER_NODE_LAYER": str(NODE_LAYER)})


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_runner_matches_the_reference_emulator(name: str, settings: Settings,
                                                   tmp_path: Path) -> None:
    case = CASES[name]
    folder = case.bundle(tmp_path)
    event = json.dumps(EVENT if case.event is None else case.event).encode()

    reference = _under_rie(case, folder, settings, tmp_path / "rie", event)
    ours = fixture_bundles.invoke(folder, settings, runtime=case.runtime, handler=case.handler,
                           event=event, timeout_ms=case.timeout_s * 1000, trace_id=TRACE_ID,
                           client_context=CLIENT_CONTEXT)

    {"response": _same_response, "error": _same_error, "error-then-exit": _same_posted_error,
     "trailer-error": _trailer_error, "exit": _same_exit,
     "timeout": _same_timeout}[case.ends](reference, ours)


def _rie_shows(deviation: Deviation, holds: bool) -> None:
    """The RIE still deviates from Lambda this way (else the table in the docs is stale)."""
    assert holds, (f"the RIE no longer shows {deviation.name} ({deviation.value}): "
                   "update docs/runtime-api-deviations.md")


def _same_response(reference: rie.Answer, ours: fixture_bundles.Run) -> None:
    assert reference.status == 200, reference.body[:500]
    assert ours.outcome.response is not None, ours.result.error
    body = ours.outcome.response.body
    theirs_json, ours_json = _json_or_none(reference.body), _json_or_none(body)
    if theirs_json is None:
        assert reference.body == body
        return
    _rie_shows(Deviation.NO_TRACE, TRACE_ID not in _traces(theirs_json))
    if _traces(ours_json):  # the fixtures that report a trace id: the runner passes Lambda's
        assert set(_traces(ours_json)) == {TRACE_ID}
    assert _comparable(ours_json) == _comparable(theirs_json)
    _rie_shows(Deviation.CONTENT_TYPE,
               reference.headers["content-type"] == "text/plain; charset=utf-8")


def _same_error(reference: rie.Answer, ours: fixture_bundles.Run) -> None:
    _rie_shows(Deviation.FUNCTION_ERROR_STATUS,
               reference.status == 200 and "x-amz-function-error" not in reference.headers)
    _same_posted_error(reference, ours)


def _same_posted_error(reference: rie.Answer, ours: fixture_bundles.Run) -> None:
    if reference.status != 200:
        _rie_shows(Deviation.ERROR_THEN_EXIT, reference.status == 502)
    assert ours.result.error is not None
    assert ours.result.error.type == "Function.Error", ours.result.error
    posted = ours.result.error.function_error
    assert posted is not None
    theirs = json.loads(reference.body)
    assert (posted.error_type, posted.error_message) == (theirs["errorType"],
                                                         theirs["errorMessage"])


def _trailer_error(reference: rie.Answer, ours: fixture_bundles.Run) -> None:
    """The RIE hands the caller what came before the failure, as a success; Lambda, and the
    runner, report the error the trailers name."""
    _rie_shows(Deviation.DROPS_ERROR_TRAILERS,
               reference.status == 200 and "x-amz-function-error" not in reference.headers)
    assert ours.result.error is not None
    assert ours.result.error.type == "Function.Error", ours.result.error
    assert ours.result.error.function_error is not None
    assert ours.result.error.function_error.error_message


def _same_exit(reference: rie.Answer, ours: fixture_bundles.Run) -> None:
    _rie_shows(Deviation.EXIT_STATUS, reference.status == 502)
    theirs = json.loads(reference.body)
    assert ours.result.error is not None
    assert ours.result.error.type == theirs["errorType"] == "Runtime.ExitError"
    their_id = theirs["errorMessage"].removeprefix("RequestId: ").split(" ", 1)[0]
    expected = theirs["errorMessage"].replace(their_id, ours.outcome.request_id)
    # Deviation.SIGNAL_NAME: "signal: aborted" is Go's wording; the runner adds "(SIGABRT)".
    assert ours.result.error.message in (expected, f"{expected} (SIGABRT)")


def _same_timeout(reference: rie.Answer, ours: fixture_bundles.Run) -> None:
    text = reference.body.decode()
    _rie_shows(Deviation.TIMEOUT_TEXT,
               reference.status == 200 and text.startswith("Task timed out after"))
    assert ours.result.error is not None
    assert ours.result.error.type == "Sandbox.Timedout"
    assert ours.result.error.message == f"RequestId: {ours.outcome.request_id} Error: {text}"


def test_every_deviation_is_in_the_docs() -> None:
    table = (Path(__file__).resolve().parents[3] / "docs" / "runtime-api-deviations.md")
    text = table.read_text()
    assert [d.name for d in Deviation if f"`{d.name}`" not in text] == []


def test_the_client_context_reaches_both(tmp_path: Path, settings: Settings) -> None:
    """The RIE takes X-Amz-Client-Context base64, as the Invoke API does, and passes it on."""
    folder = toolchains.go_bundles()["echo"].folder
    reference = _under_rie(CASES["go-echo"], folder, settings, tmp_path, b"{}")

    got = json.loads(reference.body)["received"]
    assert got["client_context_custom"] == json.loads(CLIENT_CONTEXT)["custom"]
