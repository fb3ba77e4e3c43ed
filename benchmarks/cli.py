"""The local command's rows: `udf-runner invoke` of a trivial bundle folder, the whole process
(interpreter, imports, upload, token, the task, exit), with a running local stack and without
one (the command then starts its own); the floor is a Python process of the same venv doing one
HTTP exchange with the running stack.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from benchmarks.report import Row, ratio_row
from benchmarks.stats import interleaved

_UDF_RUNNER = Path(sys.executable).with_name("udf-runner")
_ONE_EXCHANGE = ("import http.client, sys; c = http.client.HTTPConnection(sys.argv[1]); "
                 "c.request('GET', '/'); c.getresponse().read()")


def _timed(argv: list[str], env: Mapping[str, str], cwd: Path,
           check: Callable[[str], None] | None = None) -> Callable[[], float]:
    def run() -> float:
        started = time.perf_counter()
        done = subprocess.run(argv, env=dict(env), cwd=cwd, capture_output=True, text=True,
                              check=False)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:3])} failed ({done.returncode}):\n"
                               f"{done.stdout[-2000:]}{done.stderr[-3000:]}")
        if check:
            check(done.stdout)
        return seconds
    return run


def _succeeded(stdout: str) -> None:
    result = json.loads(stdout)
    if result["status"] != "succeeded":
        raise RuntimeError(f"udf-runner invoke failed: {result['error']}")


def rows(bundle_dir: Path, env: Mapping[str, str], stack_env: Mapping[str, str], *,
         stack_host: str, cwd: Path, runs: int) -> list[Row]:
    """cli devstack, cli no stack. `env` has no stack in it; `stack_env` is what
    `udf-runner devstack` prints for the running one."""
    invoke = [str(_UDF_RUNNER), "invoke", str(bundle_dir), "--runtime", "provided", "--json"]
    times = interleaved({
        "devstack": _timed(invoke, {**env, **stack_env}, cwd, _succeeded),
        "no stack": _timed(invoke, env, cwd, _succeeded),
        "floor": _timed([sys.executable, "-c", _ONE_EXCHANGE, stack_host], env, cwd),
    }, runs=runs)
    floor = "a Python process of the same venv doing one HTTP exchange with the running stack"
    return [
        ratio_row("cli devstack", "udf-runner invoke, whole process, local stack running",
                  floor, times, kind="time", target=8.0, measured_key="devstack",
                  floor_key="floor"),
        ratio_row("cli no stack", "udf-runner invoke, whole process, no stack running (it "
                  "starts one)", floor, times, kind="time", target=25.0,
                  measured_key="no stack", floor_key="floor"),
    ]
