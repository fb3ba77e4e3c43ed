"""Every official-client fixture, as its toolchain zipped it, through `udf-runner invoke`: the
console command, which runs the deployed handler (`runner.app.lambda_handler`) on the local
stack, so each bundle is fetched from S3, verified, extracted and run as in Lambda."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack.bundles import zip_folder
from devstack.stack import LocalStack
from tests.support import fixture_bundles, toolchains

UDF_RUNNER = Path(sys.executable).parent / "udf-runner"
EVENT = {"answer": 42, "text": "héllo"}
NODE_HANDLERS = fixture_bundles.FIXTURES / "node" / "handlers"


@dataclass(frozen=True)
class Case:
    """One fixture run: its bundle, how to run it, and what its result must show."""

    bundle: Callable[[Path], Path]  # given a scratch dir, the bundle zip or folder
    handler: str | None
    error_type: str | None  # None: it must succeed
    check: Callable[[dict[str, Any]], bool]
    runtime: str = "provided"


def _rust(variant: str) -> Callable[[Path], Path]:
    return lambda _: getattr(toolchains.rust_bundles(), variant).zip


def _go(name: str) -> Callable[[Path], Path]:
    return lambda _: toolchains.go_bundles()[name].zip


def _python_ric(scratch: Path) -> Path:
    return fixture_bundles.build_python_ric(scratch / "python-ric")


def _zipped(folder: Path) -> Callable[[Path], Path]:
    def build(scratch: Path) -> Path:
        dest = scratch / f"{folder.name}.zip"
        dest.write_bytes(zip_folder(folder))
        return dest
    return build


def _streamed(result: dict[str, Any]) -> bytes:
    return base64.b64decode(result["response_base64"]).partition(b"\0" * 8)[2]


def _posted(error_type: str) -> Callable[[dict[str, Any]], bool]:
    return lambda result: bool(result["error"]["function_error"]["errorType"] == error_type)


def _echoed(result: dict[str, Any]) -> bool:
    return bool(result["response"]["event"] == EVENT)


CASES = {
    "rust-echo": Case(_rust("abort"), "echo", None, _echoed),
    "rust-error": Case(_rust("abort"), "error", "Function.Error", _posted("FixtureError")),
    "rust-panic-abort": Case(_rust("abort"), "panic", "Runtime.ExitError",
                             lambda r: "signal: aborted" in r["error"]["message"]),
    "rust-panic-unwind": Case(_rust("unwind"), "panic", "Function.Error",
                              lambda r: "Lambda panicked" in r["error"]["message"]),
    "rust-1mib": Case(_rust("abort"), "big", None, lambda r: r["response"] == "x" * (1 << 20)),
    "rust-stream": Case(_rust("abort"), "stream", None,
                        lambda r: _streamed(r) == b"chunk 1\nchunk 2\n"),
    "rust-stream-error": Case(_rust("abort"), "stream-error", None,
                              lambda r: b"Runtime.StreamError" in _streamed(r)),
    "go-echo": Case(_go("echo"), None, None, _echoed),
    "go-error": Case(_go("error"), None, "Function.Error", _posted("FixtureError")),
    "go-panic": Case(_go("panic"), None, "Function.Error", _posted("string")),
    "go-deadline": Case(_go("deadline"), None, None, lambda r: r["response"]["has_deadline"]),
    "go-reader-error": Case(_go("readerror"), None, "Function.Error", _posted("ReadError")),
    "go-sigterm": Case(_go("sigterm"), None, None, lambda r: r["response"]["event"] == EVENT),
    "go-stream": Case(_go("stream"), None, None,
                      lambda r: _streamed(r) == b"chunk 1\nchunk 2\n"),
    "awslambdaric-echo": Case(_python_ric, "handler.echo", None, _echoed),
    "awslambdaric-error": Case(_python_ric, "handler.fail", "Function.Error",
                               _posted("ValueError")),
    "bash-tutorial": Case(_zipped(fixture_bundles.bash_bundle("tutorial")), "function.handler",
                          None, lambda r: "Echoing request" in base64.b64decode(
                              r["response_base64"]).decode()),
    "node-ric": Case(_zipped(NODE_HANDLERS / "esm-mjs"), "index.handler", None,
                     lambda r: r["status"] == "succeeded", runtime="nodejs"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_fixture_through_udf_runner_invoke(name: str, local_stack: LocalStack,
                                                work_root: Path, tmp_path: Path) -> None:
    case = CASES[name]
    event = tmp_path / "event.json"
    event.write_text(json.dumps(EVENT))
    argv = [str(UDF_RUNNER), "invoke", "--json", "--runtime", case.runtime,
            "--event", str(event), str(case.bundle(tmp_path))]
    if case.handler:
        argv += ["--handler", case.handler]
    env = {**os.environ, **local_stack.access.to_environ(),
           "UDF_RUNNER_WORK_ROOT": str(work_root)}

    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False,
                          timeout=300)

    result = json.loads(done.stdout)
    assert done.returncode == (0 if case.error_type is None else 1), done.stderr
    assert (result["error"] or {}).get("type") == case.error_type, result["error"]
    assert result["bundle"]["sha256"]
    assert case.check(result), result
