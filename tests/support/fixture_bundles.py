"""Build the runtime fixtures of `tests/fixtures` into bundles, and run a bundle for one invocation.

The bundles are built from source on each test session: the Rust `bootstrap` with cargo (std
only), the Python one by vendoring the official `awslambdaric` from PyPI next to the handler
(for Debian's `/usr/bin/python3`, which an unprivileged uid can run, unlike anything under
/root), the bash ones copied as they are. `invoke` runs a bundle folder the way the local
command does: a fresh attempt directory, the bundle copied in as if extracted, the environment
built by `runner.runtimes.environment`, `run_invocation`, then `runner.result.build`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import result, runtimes
from runner.containment.workdir import attempt_dir
from runner.invoke.driver import InvocationOutcome, InvocationSpec, run_invocation
from runner.models import TaskResult
from runner.platform import ScopedCredentials
from runner.settings import Settings

FIXTURES = Path(__file__).parents[1] / "fixtures"
#: The interpreter the Python bundle's `bootstrap` runs (world-executable, unlike pyenv's).
SYSTEM_PYTHON = Path("/usr/bin/python3")
AWSLAMBDARIC = "awslambdaric==4.2.2"
TASK_ID = "test-task"
TOKEN = "test-capability-token"
LABEL = f"{TASK_ID}/1"


def _run(argv: list[str], **kwargs: Any) -> None:
    """Run a build step; its output is shown only when it fails."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}):\n{done.stdout}{done.stderr}")


def build_python_ric(dest: Path) -> Path:
    """The awslambdaric fixture with the client (and its native module) vendored into it."""
    shutil.copytree(FIXTURES / "python_ric", dest)
    version = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, check=True).stdout.strip()
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
          "--no-compile", "--target", str(dest), "--only-binary=:all:",
          "--implementation", "cp", "--python-version", version,
          "--platform", "manylinux2014_x86_64", AWSLAMBDARIC])
    return dest


def _cargo() -> str:
    found = shutil.which("cargo") or Path.home() / ".cargo" / "bin" / "cargo"
    return str(found)


def build_rust(dest: Path, target_dir: Path) -> Path:
    """The std-only Rust fixture, compiled, as a bundle holding just its `bootstrap`."""
    _run([_cargo(), "build", "--release", "--locked", "--offline", "--quiet",
          "--manifest-path", str(FIXTURES / "rust" / "Cargo.toml")],
         env={**os.environ, "CARGO_TARGET_DIR": str(target_dir)})
    dest.mkdir(parents=True)
    bootstrap = dest / "bootstrap"
    shutil.copy2(target_dir / "release" / "bootstrap", bootstrap)
    bootstrap.chmod(0o755)
    return dest


def build_go(dest: Path) -> Path:
    """The std-only Go fixture, statically linked (CGO off), as a bundle of its `bootstrap`."""
    dest.mkdir(parents=True)
    _run(["go", "build", "-trimpath", "-o", str(dest / "bootstrap"), "."],
         cwd=FIXTURES / "go", env={**os.environ, "CGO_ENABLED": "0", "GOOS": "linux",
                                   "GOARCH": "amd64", "GOFLAGS": "-mod=mod"})
    return dest


def bash_bundle(name: str) -> Path:
    """A bash fixture folder (`tutorial` or `lifecycle`), used as it is."""
    return FIXTURES / "bash" / name


@dataclass(frozen=True)
class Run:
    """One invocation of a bundle: what the runner reported and what the child printed."""

    outcome: InvocationOutcome
    result: TaskResult
    lines: list[str]
    task_root: Path

    @property
    def response(self) -> dict[str, Any]:
        """The function's JSON object response (the invocation must have succeeded)."""
        assert self.result.status == "succeeded", self.result.error
        assert isinstance(self.result.response, dict)
        return self.result.response

    def printed(self, prefix: str) -> list[str]:
        """What follows `prefix` on each forwarded line that starts with it."""
        found = []
        for line in self.lines:
            _, _, text = line.partition("] ")
            if text.startswith(prefix):
                found.append(text.removeprefix(prefix))
        return found

    def got(self) -> dict[str, Any]:
        """The `GOT <json>` record a fixture prints with what its client received."""
        (record,) = self.printed("GOT ")
        value = json.loads(record)
        assert isinstance(value, dict)
        return value

    def pid(self) -> int:
        """The pid (and process group) a lifecycle bootstrap printed."""
        (pid,) = self.printed("PID ")
        return int(pid)


def invoke(bundle: Path, settings: Settings, *, runtime: str = "provided",
           handler: str | None = None, event: bytes = b"{}", timeout_ms: int = 10_000,
           user_env: Mapping[str, str] | None = None,
           credentials: ScopedCredentials | None = None,
           s3_endpoint_url: str | None = None,
           token: str = TOKEN,
           trace_id: str | None = None, client_context: str | None = None,
           cognito_identity: str | None = None) -> Run:
    """Run the bundle folder `bundle` for one invocation, as the local command does."""
    task = runtimes.TaskEnvironment(task_id=TASK_ID, attempt=1, token=token,
                                  query_url="http://127.0.0.1:9/query",
                                  credentials_url="http://127.0.0.1:9/credentials",
                                  output_prefix="s3://udf-outputs/test-task/",
                                  credentials=credentials, user_env=dict(user_env or {}),
                                  s3_endpoint_url=s3_endpoint_url)
    lines: list[str] = []
    with attempt_dir(settings.work_root, TASK_ID) as dirs:
        shutil.copytree(bundle, dirs.task_root, symlinks=True, dirs_exist_ok=True)
        spec = InvocationSpec(
            child=runtimes.child_spec(runtime, dirs, handler, task, settings),
            event=event, timeout_ms=timeout_ms, function_arn=runtimes.function_arn(settings),
            label=LABEL, trace_id=trace_id, client_context=client_context,
            cognito_identity=cognito_identity)
        outcome = run_invocation(spec, settings, sink=lines.append)
    built = result.build(task_id=TASK_ID, attempt=1, response=outcome.response,
                         error=outcome.error, timings_ms=outcome.timings_ms, logs=outcome.logs)
    return Run(outcome, built, lines, dirs.task_root)
