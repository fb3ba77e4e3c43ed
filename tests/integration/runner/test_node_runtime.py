"""Node bundles on the real runtime: Node 24 and the official `aws-lambda-ric` from the layer that
`make layer` builds, driven by the Runtime API emulation exactly as the pipeline calls it
(`runtimes.child_spec("nodejs", ...)`, `run_invocation`, `result.build`).

The fixtures are the handler sources in tests/fixtures/node/handlers; the ethers one is bundled
here with esbuild, the vendored one gets ethers copied from the fixtures' own `npm ci`.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner import result, runtimes
from runner.containment.workdir import attempt_dir
from runner.errors import MissingEntrypointError
from runner.settings import Settings
from tests.support import fixture_bundles
from tests.support.fixture_bundles import Run

REPO = Path(__file__).resolve().parents[3]
LAYER = REPO / "layers" / "nodejs" / "build"
FIXTURES = REPO / "tests" / "fixtures" / "node"
HANDLERS = FIXTURES / "handlers"
NODE_MODULES = FIXTURES / "node_modules"
ESBUILD = NODE_MODULES / "@esbuild" / "linux-x64" / "bin" / "esbuild"
TIMEOUT_MS = 30_000

# An ERC-20 Transfer of 1234567890123456789012 base units (over 2**53: it must stay exact).
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
SENDER = "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045"
RECIPIENT = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
AMOUNT = 1234567890123456789012


def _word(hex_value: str) -> str:
    return "0x" + hex_value.lower().removeprefix("0x").rjust(64, "0")


TRANSFER_EVENT = {"log": {
    "address": "0xdAC17F958D2ee523a2206206994597C13D831ec7",
    "topics": [TRANSFER_TOPIC, _word(SENDER), _word(RECIPIENT)],
    "data": _word(f"{AMOUNT:x}"),
}}


@pytest.fixture(scope="session", autouse=True)
def _node_prerequisites() -> None:
    missing = [str(p) for p in (LAYER / "bin" / "node", ESBUILD) if not p.exists()]
    if missing:
        pytest.fail(f"not built: {', '.join(missing)}; run `make setup` (or `make layer` and "
                    "npm ci in tests/fixtures/node)", pytrace=False)


@pytest.fixture
def node_settings(work_root: Path) -> Settings:
    return Settings.from_env({"UDF_RUNNER_WORK_ROOT": str(work_root),
                              "UDF_RUNNER_NODE_LAYER": str(LAYER)})


@pytest.fixture(scope="session")
def ethers_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ethers handler bundled by esbuild into one ESM file, as a UDF author ships it."""
    dest = tmp_path_factory.mktemp("ethers-esm")
    subprocess.run(
        [str(ESBUILD), str(HANDLERS / "ethers-esm" / "index.mjs"), "--bundle",
         "--platform=node", "--target=node24", "--format=esm", "--log-level=warning",
         f"--outfile={dest / 'index.mjs'}"],
        cwd=FIXTURES, check=True, capture_output=True)
    return dest


@pytest.fixture(scope="session")
def vendored_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CommonJS ethers handler with its production dependencies in node_modules."""
    dest = tmp_path_factory.mktemp("ethers-vendored") / "bundle"
    shutil.copytree(HANDLERS / "ethers-vendored", dest)
    lock = json.loads((NODE_MODULES / ".package-lock.json").read_text())
    for location, entry in lock["packages"].items():
        if location and not entry.get("dev"):
            shutil.copytree(FIXTURES / location, dest / location)
    return dest


def invoke(bundle: Path, handler: str, settings: Settings, *, event: Any = None,
           user_env: dict[str, str] | None = None) -> Run:
    """Run the bundle folder as if extracted from its zip, for one invocation."""
    return fixture_bundles.invoke(bundle, settings, runtime="nodejs", handler=handler,
                           event=json.dumps({} if event is None else event).encode(),
                           timeout_ms=TIMEOUT_MS, user_env=user_env)


def test_esbuild_bundled_ethers_handler_decodes_a_transfer_log(
        node_settings: Settings, ethers_bundle: Path) -> None:
    run = invoke(ethers_bundle, "index.handler", node_settings, event=TRANSFER_EVENT)

    assert run.response == {"event": "Transfer", "from": SENDER, "to": RECIPIENT,
                            "value": str(AMOUNT)}


def test_vendored_node_modules_work_without_a_bundler(node_settings: Settings,
                                                      vendored_bundle: Path) -> None:
    run = invoke(vendored_bundle, "index.handler", node_settings, event=TRANSFER_EVENT)

    response = run.response
    assert (response["from"], response["to"], response["value"]) == (SENDER, RECIPIENT,
                                                                      str(AMOUNT))
    assert Path(response["loadedFrom"]).is_relative_to(run.task_root / "node_modules" / "ethers")


@pytest.mark.parametrize(("fixture", "handler", "kind"), [
    ("cjs", "index.handler", "cjs"),
    ("cjs-ext", "app.handler", "cjs-ext"),
    ("esm-mjs", "index.handler", "mjs"),
    ("type-module", "index.handler", "type-module"),
])
def test_each_module_format_runs(node_settings: Settings, fixture: str, handler: str,
                                 kind: str) -> None:
    event = {"block": 19_000_000, "nested": {"ok": True}}

    run = invoke(HANDLERS / fixture, handler, node_settings, event=event)

    assert run.response["kind"] == kind
    assert run.response["echo"] == event


def test_commonjs_js_runs_as_commonjs(node_settings: Settings) -> None:
    run = invoke(HANDLERS / "cjs", "index.handler", node_settings)

    assert run.response["moduleSystem"] == "commonjs"
    assert (run.response["functionName"], run.response["memoryLimitInMB"]) == ("udf", "1024")


def test_nested_handler_path_is_relative_to_the_task_root(node_settings: Settings) -> None:
    run = invoke(HANDLERS / "nested", "src/handlers/alert.handler", node_settings,
                 event={"amount": 5_000})

    assert run.response == {"kind": "nested", "alert": "whale"}


def test_context_agrees_with_the_invocation(node_settings: Settings) -> None:
    before_ms = time.time() * 1000

    run = invoke(HANDLERS / "context", "index.handler", node_settings)

    after_ms = time.time() * 1000
    got, outcome = run.response, run.outcome
    assert got["awsRequestId"] == outcome.request_id
    assert before_ms + TIMEOUT_MS - 1 <= outcome.deadline_ms <= after_ms + TIMEOUT_MS
    assert 0 < got["remainingMs"] <= TIMEOUT_MS
    # getRemainingTimeInMillis() is the deadline the runner sent, less the handler's clock
    # (read just before and just after the call).
    deadline = outcome.deadline_ms
    assert deadline - got["after"] <= got["remainingMs"] <= deadline - got["before"]
    assert got["invokedFunctionArn"] == runtimes.function_arn(node_settings)
    assert got["functionVersion"] == "$LATEST"
    assert got["logGroupName"] == "/aws/lambda/udf"
    assert got["nodeVersion"] == "v24.21.0"


def test_handler_sees_the_nodejs24_environment(node_settings: Settings) -> None:
    run = invoke(HANDLERS / "context", "index.handler", node_settings,
                 user_env={"USER_SETTING": "from-the-task"})

    env, root = run.response["env"], str(run.task_root)
    assert run.response["cwd"] == root
    assert env["_HANDLER"] == "index.handler"
    assert env["LAMBDA_TASK_ROOT"] == root
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_nodejs24.x"
    assert env["NODE_PATH"].split(":")[-1] == root
    assert env["NODE_PATH"].startswith(f"{LAYER}/nodejs/node24/node_modules:"
                                       f"{LAYER}/nodejs/node_modules:")
    assert env["PATH"].startswith(f"{LAYER}/bin:")
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert env["TRACE_TASK_ID"] == fixture_bundles.TASK_ID
    assert env["USER_SETTING"] == "from-the-task"
    assert env["TZ"] == ":UTC"


def test_a_thrown_error_keeps_its_type_message_and_trace(node_settings: Settings) -> None:
    run = invoke(HANDLERS / "throws", "index.handler", node_settings, event={"logIndex": 7})

    error = run.result.error
    assert error is not None
    assert (error.type, error.message) == ("Function.Error",
                                           "TypeError: cannot decode log at index 7")
    assert error.function_error is not None
    assert error.function_error.error_type == "TypeError"
    assert error.function_error.error_message == "cannot decode log at index 7"
    trace = error.function_error.stack_trace
    assert trace[0] == "TypeError: cannot decode log at index 7"
    assert f"at decode (file://{run.task_root}/index.mjs:3:" in trace[1]
    assert any("Invoke Error" in line for line in run.lines)  # the client's own log line


@pytest.mark.parametrize(("fixture", "handler", "error_type", "message"), [
    ("callback", "index.handler", "Runtime.CallbackHandlerDeprecated",
     "removed support for callback-based function handlers starting with Node.js 24"),
    ("syntax-error", "index.handler", "Runtime.UserCodeSyntaxError", "SyntaxError: "),
    ("import-missing", "index.handler", "Runtime.ImportModuleError",
     "Cannot find module 'left-pad-that-was-never-vendored'"),
    ("no-export", "index.handler", "Runtime.HandlerNotFound",
     "index.handler is undefined or not exported"),
    ("cjs", "index", "Runtime.MalformedHandlerName", "Bad handler"),
])
def test_the_clients_init_errors_are_kept(node_settings: Settings, fixture: str, handler: str,
                                          error_type: str, message: str) -> None:
    run = invoke(HANDLERS / fixture, handler, node_settings)

    error = run.result.error
    assert error is not None
    assert error.type == "Runtime.InitError"
    assert error.function_error is not None
    assert error.function_error.error_type == error_type
    assert message in error.function_error.error_message
    assert error.function_error.stack_trace
    assert "invoke" not in run.outcome.timings_ms  # it never asked for the event


@pytest.mark.parametrize("handler", ["index.handler", "src/handlers/missing.handler"])
def test_a_missing_handler_file_fails_before_anything_starts(
        node_settings: Settings, handler: str) -> None:
    task = runtimes.TaskEnvironment(task_id="node-task", attempt=1, token="test-capability-token")
    with attempt_dir(node_settings.work_root, "node-task") as dirs:
        shutil.copytree(HANDLERS / "nested", dirs.task_root, dirs_exist_ok=True)
        with pytest.raises(MissingEntrypointError) as raised:
            runtimes.child_spec("nodejs", dirs, handler, task, node_settings)

    error = result.build(task_id="node-task", attempt=1, error=raised.value).error
    assert error is not None
    assert (error.type, error.retryable) == ("Bundle.MissingEntrypoint", False)
    assert handler in error.message


def test_a_streamed_body_comes_back_assembled(node_settings: Settings) -> None:
    chunks, size = 64, 4096

    run = invoke(HANDLERS / "streaming", "index.handler", node_settings,
                 event={"chunks": chunks, "size": size})

    assert run.response == {"kind": "streaming", "chunks": ["x" * size] * chunks}
    assert run.outcome.response is not None
    assert run.outcome.response.content_type == "application/json"


def test_a_stream_that_fails_midway_reports_the_error_from_its_trailers(
        node_settings: Settings) -> None:
    run = invoke(HANDLERS / "stream-fails", "index.handler", node_settings)

    error = run.result.error
    assert error is not None
    assert error.type == "Function.Error"
    assert error.function_error is not None
    assert (error.function_error.error_type, error.function_error.error_message) == (
        "RangeError", "stream broke midway")
    assert error.function_error.stack_trace[0] == "RangeError: stream broke midway"


def _paths_from_root(path: Path) -> Iterator[Path]:
    yield from reversed(path.parents)
    yield path


def test_the_layer_is_usable_by_an_unprivileged_uid() -> None:
    for folder in _paths_from_root(LAYER):
        assert folder.stat().st_mode & stat.S_IXOTH, f"{folder} is not world-traversable"
    for path in LAYER.rglob("*"):
        mode = path.stat().st_mode
        assert mode & stat.S_IROTH, f"{path} is not world-readable"
        if path.is_dir() or path.name in {"node", "rapid-client.node"}:
            assert mode & stat.S_IXOTH, f"{path} is not world-executable"
