"""The built function (`sam build`'s artifact) running under the official Python runtime
interface client, as Lambda's python3.13 runtime runs it, against a Runtime API in the test."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from devstack.local_run import grant_for
from runner.containment.removal import remove_tree
from tests.e2e.lambda_host import LambdaHost, serve

if TYPE_CHECKING:
    from devstack.stack import LocalStack

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / ".aws-sam" / "build"
FUNCTION = BUILD / "RunnerFunction"
LAYER = BUILD / "NodeRuntimeLayer"
#: Lambda's own interpreter stands in here: the base 3.13, not the project's virtualenv.
PYTHON = Path(sys.base_prefix) / "bin" / "python3.13"
AWSLAMBDARIC = "awslambdaric==4.2.2"
#: The role credentials Lambda puts in the function's environment; no bundle may ever see them.
ROLE = {"AWS_ACCESS_KEY_ID": "ASIAE2EROLECANARY000",
        "AWS_SECRET_ACCESS_KEY": "e2e-role-secret-canary",
        "AWS_SESSION_TOKEN": "e2e-role-session-token-canary"}
MAX_TIMEOUT_MS = 60_000


@dataclass
class Function:
    """The function in one warm execution environment."""

    host: LambdaHost
    stack: LocalStack
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    def collect(self) -> None:
        """Read the function's output (its log) until it exits."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._arrived:
                self.output.append(line)
                self._arrived.notify_all()

    def records(self, until: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """The JSON log records so far, once one of them satisfies `until` (the log is read
        by another thread, so a record written before an answer may arrive just after it)."""
        def parsed() -> list[dict[str, Any]]:
            return [json.loads(line) for line in self.output if line.startswith("{")]

        with self._arrived:
            self._arrived.wait_for(lambda: any(until(r) for r in parsed()), timeout=30)
            return parsed()

    def invoke(self, payload: Any, *, reissue_token: bool = True) -> Any:
        """Invoke with `payload` (given a fresh token for it); the function's response."""
        if reissue_token and isinstance(payload, dict):
            # A payload too broken to grant anything keeps its token: the function says why.
            with contextlib.suppress(ValueError):
                payload = payload | {
                    "capability_token": self.stack.issue_token(grant_for(payload))}
        answer = self.host.invoke(payload, timeout_s=(MAX_TIMEOUT_MS + 60_000) / 1000)
        assert answer.kind == "response", answer.body
        return answer.body


@pytest.fixture(scope="session")
def runtime_client() -> Iterator[Path]:
    """awslambdaric from PyPI, as Lambda's python3.13 runtime carries it (readable by all)."""
    target = Path(tempfile.mkdtemp(prefix="udf-runner-e2e-ric-"))
    target.chmod(0o755)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-compile",
                    "--disable-pip-version-check", "--target", str(target), AWSLAMBDARIC],
                   check=True)
    yield target
    remove_tree(target)


def lambda_environment(host: LambdaHost, stack: LocalStack, client: Path,
                       work_root: Path) -> dict[str, str]:
    """What Lambda's python3.13 runtime and the template's configuration give the function
    (the service URLs point at the local stack)."""
    return {
        "PATH": f"{PYTHON.parent}:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
        "LANG": "en_US.UTF-8", "TZ": ":UTC", "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": f"{client}:{FUNCTION}",
        "_HANDLER": "runner.app.lambda_handler",
        "LAMBDA_TASK_ROOT": str(FUNCTION), "LAMBDA_RUNTIME_DIR": str(client),
        "AWS_LAMBDA_RUNTIME_API": host.address,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": "udf-runner", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/udf-runner",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/26/[$LATEST]e2e",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        **ROLE,
        **stack.access.runner_environ(),
        "UDF_RUNNER_MAX_TIMEOUT_MS": str(MAX_TIMEOUT_MS),
        "UDF_RUNNER_WORK_ROOT": str(work_root),
        "UDF_RUNNER_NODE_LAYER": str(LAYER),
        "POWERTOOLS_SERVICE_NAME": "udf-runner",
        "POWERTOOLS_METRICS_NAMESPACE": "UdfRunner",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "POWERTOOLS_LOGGER_LOG_EVENT": "false",
        "PYDANTIC_DISABLE_PLUGINS": "__all__",
    }


@pytest.fixture(scope="session")
def function(local_stack: LocalStack, runtime_client: Path) -> Iterator[Function]:
    """The built function, started once: every test is an invocation of the same warm
    environment, as successive tasks on one Lambda execution environment are."""
    if not (FUNCTION / "runner" / "app.py").is_file() or not (LAYER / "bin" / "node").is_file():
        pytest.fail(f"no built function in {BUILD}: run `make sam-build` first")
    host, thread = serve()
    work_root = Path(tempfile.mkdtemp(prefix="udf-runner-e2e-"))
    work_root.chmod(0o711)
    process = subprocess.Popen(
        [str(PYTHON), "-s", "-m", "awslambdaric", "runner.app.lambda_handler"], cwd=FUNCTION,
        env=lambda_environment(host, local_stack, runtime_client, work_root),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    running = Function(host, local_stack, process)
    reader = threading.Thread(target=running.collect, daemon=True)
    reader.start()
    try:
        yield running
    finally:
        process.terminate()
        process.wait()
        reader.join()
        if process.stdout is not None:
            process.stdout.close()
        host.shutdown()
        host.server_close()
        thread.join()
        remove_tree(work_root)

