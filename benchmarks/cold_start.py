"""The cold-start rows: the built function under the official Python runtime client, from process
start to its first `GET /next` (with its peak RSS then), and to the response of its first task,
a cache miss on the local stack; the floor is a bare handler (`def h(e, c): return e`) in the
same harness, with the same interpreter, environment and payload.

This is what Lambda reports as Init Duration plus the first invoke, and what a tenant waits for
on every new execution environment (with per-tenant isolation, each starts with an empty cache).

The harness is a threaded HTTP/1.1 Runtime API on loopback: it answers the child's first
`/next` with the payload, records when that request arrives (with the child's VmHWM and CPU
time at that moment) and when the response arrives, holds the second `/next`, and kills the
child. The environment is Lambda's (`LAMBDA_TASK_ROOT`, `AWS_EXECUTION_ENV`, the X-Ray daemon
address...) plus the template's variables: whatever the function does for tracing with
`Tracing: Active` happens here too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchmarks.artifact import Artifact
from benchmarks.fixtures import BENCHMARKS
from benchmarks.report import Row, ratio_row
from benchmarks.stats import interleaved, summary

RUNNER = "runner.app.lambda_handler"
BARE = "lambda_floor.lambda_handler"
#: Longest wait for a child's first request or response: a child that died is an error.
TIMEOUT_SECONDS = 60.0
_TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
#: Variables of the runner's own configuration passed on from the suite's runner environment.
_PASSED_ON = ("UDF_RUNNER_", "POWERTOOLS_")


@dataclass
class ColdStart:
    """One process, from spawn to its first response."""

    next_s: float = 0.0  # spawn → first GET /next
    response_s: float = 0.0  # spawn → first POST .../response
    peak_rss_mib: float = 0.0  # VmHWM when the first /next arrived
    cpu_s: float = 0.0  # CPU time of the process's threads when the first /next arrived
    response_cpu_s: float = 0.0  # the same when the first response arrived
    response: bytes = b""


@dataclass
class _Run:
    """The state of the run in progress, shared with the server's threads."""

    event: bytes
    started: float
    pid: int = 0
    sample: ColdStart = field(default_factory=ColdStart)
    first_next: threading.Event = field(default_factory=threading.Event)
    answered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    error: str = ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a killed child resets its connections, which is how every run ends."""


class RuntimeApiStub:
    """A Runtime API for one child at a time."""

    def __init__(self) -> None:
        self.run: _Run | None = None
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """host:port, as AWS_LAMBDA_RUNTIME_API."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def close(self) -> None:
        """Stop serving."""
        if self.run:
            self.run.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def cold_start(self, argv: list[str], env: Mapping[str, str], event: bytes, log: Path,
                   cwd: Path) -> ColdStart:
        """Spawn `argv` in `cwd` (Lambda starts the runtime in the task root, which `python -m`
        puts first on the path), serve it `event`, return the timings once it has answered."""
        env = {**env, "AWS_LAMBDA_RUNTIME_API": self.address}
        run = self.run = _Run(event=event, started=time.perf_counter())
        with log.open("wb") as out:
            child = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out,
                                     stderr=subprocess.STDOUT)
        run.pid = child.pid
        try:
            if not run.answered.wait(TIMEOUT_SECONDS) or run.error:
                raise RuntimeError(f"{argv[-1]} did not answer ({run.error or 'timeout'}):\n"
                                   f"{log.read_text(errors='replace')[-3000:]}")
        finally:
            child.kill()
            child.wait()
            run.release.set()
        return run.sample


def _handler_for(stub: RuntimeApiStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the suite prints its own report."""

        def do_GET(self) -> None:
            run = stub.run
            if run is None or run.first_next.is_set():  # the second /next: hold it
                if run is not None:
                    run.release.wait(TIMEOUT_SECONDS)
                self.close_connection = True
                return
            run.sample.next_s = time.perf_counter() - run.started
            run.sample.peak_rss_mib, run.sample.cpu_s = _memory_and_cpu(run.pid)
            run.first_next.set()
            self._reply(200, run.event, {
                "Content-Type": "application/json", "Lambda-Runtime-Aws-Request-Id": "r1",
                "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 900_000),
                "Lambda-Runtime-Invoked-Function-Arn":
                    "arn:aws:lambda:us-east-1:000000000000:function:udf-runner",
                "Lambda-Runtime-Trace-Id": _TRACE_HEADER})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            run = stub.run
            if run is not None and not run.answered.is_set():
                if not self.path.endswith("/response"):
                    run.error = f"POST {self.path}: {body[:2000]!r}"
                run.sample.response_s = time.perf_counter() - run.started
                run.sample.response_cpu_s = _memory_and_cpu(run.pid)[1]
                run.sample.response = body
                run.answered.set()
            self._reply(202, b'{"status":"OK"}', {"Content-Type": "application/json"})

        def _reply(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _memory_and_cpu(pid: int) -> tuple[float, float]:
    """The process's peak resident memory (MiB) and the CPU time of its threads (s)."""
    peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    cpu_ns = sum(int((task / "schedstat").read_text().split()[0])
                 for task in Path(f"/proc/{pid}/task").iterdir())
    return peak, cpu_ns / 1e9


def lambda_environ(artifact: Artifact, runner_env: Mapping[str, str],
                   work_root: Path) -> dict[str, str]:
    """What Lambda and the template set for the function, pointed at the local stack."""
    passed = {name: value for name, value in runner_env.items() if name.startswith(_PASSED_ON)}
    return {
        **passed,
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "PYTHONPATH": artifact.python_path(BENCHMARKS),
        "LAMBDA_TASK_ROOT": str(artifact.task_root),
        "LAMBDA_RUNTIME_DIR": str(artifact.runtime_client),
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": "udf-runner",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/udf-runner",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]0123456789abcdef",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "UDF_RUNNER_WORK_ROOT": str(work_root),
        "PYDANTIC_DISABLE_PLUGINS": "__all__",  # the template's
    }


class ColdStarts:
    """Interleaved cold starts of the runner and of the bare handler, each on a fresh work root
    (an empty bundle cache: every cold start of a new environment is a cache miss)."""

    def __init__(self, artifact: Artifact, runner_env: Mapping[str, str], base: Path,
                 payload: Callable[[], dict[str, Any]]) -> None:
        self.artifact = artifact
        self.runner_env = runner_env
        self.base = base
        self.payload = payload
        self.samples: dict[str, list[ColdStart]] = {RUNNER: [], BARE: []}
        self._stub = RuntimeApiStub()
        self._count = 0

    def close(self) -> None:
        """Stop the Runtime API stub."""
        self._stub.close()

    def contender(self, handler: str) -> Callable[[], float]:
        """One cold start of `handler` (its sample kept); the seconds to its first response."""
        def run() -> float:
            self._count += 1
            work_root = self.base / f"cold-{self._count}"
            work_root.mkdir(mode=0o755)
            env = {**lambda_environ(self.artifact, self.runner_env, work_root),
                   "_HANDLER": handler}
            argv = [str(self.artifact.python), "-m", "awslambdaric", handler]
            try:
                sample = self._stub.cold_start(argv, env, json.dumps(self.payload()).encode(),
                                               self.base / "cold-start.log",
                                               self.artifact.task_root)
            finally:
                shutil.rmtree(work_root, ignore_errors=True)
            if handler == RUNNER:
                _succeeded(sample)
            self.samples[handler].append(sample)
            return sample.response_s
        return run

    def measure(self, runs: int) -> dict[str, list[ColdStart]]:
        """`runs` interleaved rounds (after one untimed); the samples of the timed ones."""
        interleaved({RUNNER: self.contender(RUNNER), BARE: self.contender(BARE)}, runs=runs)
        return {name: samples[1:] for name, samples in self.samples.items()}


def _succeeded(sample: ColdStart) -> None:
    result = json.loads(sample.response)
    if result.get("status") != "succeeded":
        raise RuntimeError(f"the cold-start task failed: {result.get('error')}")


def rows(samples: Mapping[str, list[ColdStart]], profile: dict[str, Any]) -> list[Row]:
    """cold start (first /next), cold task (first response), cold memory (peak RSS)."""
    def times(attr: str) -> dict[str, list[float]]:
        return {name: [getattr(sample, attr) for sample in values]
                for name, values in samples.items()}

    results = [json.loads(sample.response) for sample in samples[RUNNER]]
    first_next = ratio_row(
        "cold start", "first GET /next of the built runner under awslambdaric, tracing as "
        "deployed", "the same for a bare handler (def h(e, c): return e)", times("next_s"),
        kind="time", target=5.0, measured_key=RUNNER, floor_key=BARE, stretch_target=4.0,
        cpu_at_next_ms={name: summary(values) for name, values in times("cpu_s").items()},
        import_profile=profile)
    first_response = ratio_row(
        "cold task", "first response of a cold runner: a cache-miss task on the local stack",
        "the bare handler's first response (it returns the payload)", times("response_s"),
        kind="time", target=7.0, measured_key=RUNNER, floor_key=BARE,
        cpu_at_response_ms={name: summary(values)
                            for name, values in times("response_cpu_s").items()},
        task_timings_ms=[result["timings_ms"] for result in results])
    memory = ratio_row(
        "cold memory", "peak RSS (VmHWM) of the runner at its first GET /next",
        "the bare handler's at the same point", times("peak_rss_mib"), kind="memory",
        target=3.0, measured_key=RUNNER, floor_key=BARE)
    return [first_next, first_response, memory]


def import_profile(artifact: Artifact, runner_env: Mapping[str, str], work_root: Path,
                   top: int = 15) -> dict[str, Any]:
    """Where `import runner.app` spends its time in the artifact's environment
    (`python -X importtime`): self time by top-level package, and the largest modules."""
    work_root.mkdir(mode=0o755, exist_ok=True)
    env = lambda_environ(artifact, runner_env, work_root)
    done = subprocess.run([str(artifact.python), "-X", "importtime", "-c", "import runner.app"],
                          env=env, capture_output=True, text=True, check=True,
                          cwd=artifact.task_root)
    shutil.rmtree(work_root, ignore_errors=True)
    modules: list[tuple[str, float]] = []
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            self_us, _, module = line.removeprefix("import time:").split("|")
            modules.append((module.strip(), int(self_us) / 1000))
    packages: dict[str, float] = {}
    for module, own in modules:
        top_level = module.split(".")[0]
        packages[top_level] = packages.get(top_level, 0.0) + own
    largest = sorted(packages.items(), key=lambda item: -item[1])
    return {"self_ms_by_package": {name: round(ms, 1) for name, ms in largest[:top]},
            "largest_modules_ms": {name: round(ms, 1) for name, ms in
                                   sorted(modules, key=lambda item: -item[1])[:top]},
            "total_ms": round(sum(own for _, own in modules), 1)}

