"""Rows timed inside one warm runner process (a worker started by the suite): warm invoke,
node and payload, with the per-phase timings of a cold and a warm task and the cost of the
containment steps on their own.

The handler is `runner.app.lambda_handler` (imported here, so configured from this process's
environment exactly as in Lambda); each floor is `benchmarks.floor.serve_one` on the same
child in the same process, their runs interleaved.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.floor import serve_one
from benchmarks.report import Row, ratio_row
from benchmarks.stats import interleaved, summary
from devstack.local_run import LocalContext as Context
from runner.containment import WorkDirs
from runner.invoke.child import ChildSpec

#: The runner's own time beyond the task's timeout, as the SAM template gives it.
FUNCTION_MARGIN_MS = 60_000


def handle(payload: dict[str, Any]) -> dict[str, Any]:
    """The handler's result for `payload`; the task must succeed."""
    from runner.app import lambda_handler  # configured from the environment at import

    result: dict[str, Any] = lambda_handler(
        payload, Context(timeout_ms=payload["timeout_ms"] + FUNCTION_MARGIN_MS))
    if result["status"] != "succeeded":
        raise RuntimeError(f"the benchmark task failed: {result['error']}")
    return result


def timed_handler(payload: dict[str, Any]) -> Callable[[], float]:
    """A contender: one call of the handler."""
    def run() -> float:
        started = time.perf_counter()
        handle(payload)
        return time.perf_counter() - started
    return run


def child_of(payload: dict[str, Any], task_root: Path) -> ChildSpec:
    """The child the runner starts for `payload` (argv, environment without
    `AWS_LAMBDA_RUNTIME_API`), uncontained, in `task_root`: for the floor to start the very
    same process."""
    from runner import runtimes
    from runner.app import SETTINGS

    dirs = WorkDirs(task_root=task_root, home=task_root, tmp=task_root)
    task = runtimes.TaskEnvironment(task_id=payload["task_id"], attempt=payload["attempt"],
                                  token="bench")  # noqa: S106 - a placeholder, not a secret
    bundle = payload["bundle"]
    return runtimes.child_spec(bundle["runtime"], dirs, bundle.get("handler"), task, SETTINGS)


def timed_floor(payload: dict[str, Any], task_root: Path) -> Callable[[], float]:
    """A contender: the floor serving the same child the same event."""
    spec = child_of(payload, task_root)
    event = _event(payload)

    def run() -> float:
        served = serve_one(spec.argv, spec.env, task_root, event)
        if not served.response:
            raise RuntimeError("the floor got no response")
        return served.seconds
    return run


def timed_emulation(payload: dict[str, Any], task_root: Path) -> Callable[[], float]:
    """A contender between the two: `run_invocation` alone (the Runtime API emulation and the
    driver) on the same uncontained child, without the pipeline or containment around it."""
    from runner import runtimes
    from runner.app import SETTINGS
    from runner.invoke.driver import InvocationSpec, run_invocation

    invocation = InvocationSpec(child=child_of(payload, task_root), event=_event(payload),
                                timeout_ms=payload["timeout_ms"],
                                function_arn=runtimes.function_arn(SETTINGS), label="bench/1")

    def run() -> float:
        started = time.perf_counter()
        outcome = run_invocation(invocation, SETTINGS, sink=lambda line: None)
        seconds = time.perf_counter() - started
        if outcome.response is None:
            raise RuntimeError(f"run_invocation failed: {outcome.error}")
        return seconds
    return run


def _event(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload["event"], separators=(",", ":")).encode()


def _handler_row(payload: dict[str, Any], task_root: Path, runs: int, *, name: str,
                 measured: str, floor: str, target: float) -> tuple[Row, dict[str, Any]]:
    """A row of the handler against the floor (with `run_invocation` alone timed alongside),
    and the phases of the first (cold) and of a warm task."""
    cold = handle(payload)["timings_ms"]
    times = interleaved({"handler": timed_handler(payload),
                         "emulation": timed_emulation(payload, task_root),
                         "floor": timed_floor(payload, task_root)}, runs=runs, warmup=2)
    row = ratio_row(name, measured, floor, times, kind="time", target=target,
                    measured_key="handler", floor_key="floor",
                    run_invocation_alone_ms=summary(times["emulation"]))
    return row, {"cold_task": cold, "warm_task": handle(payload)["timings_ms"]}


def warm_invoke(payload: dict[str, Any], task_root: Path, runs: int) -> tuple[Row, dict[str, Any]]:
    """The warm invoke row, and the phases of a cold and of a warm task."""
    return _handler_row(
        payload, task_root, runs, name="warm invoke",
        measured="full handler, cached bundle, trivial Rust bootstrap",
        floor="spawn the same binary, serve one next/response from a bare socket server",
        target=8.0)


def node(payload: dict[str, Any], task_root: Path, runs: int) -> tuple[Row, dict[str, Any]]:
    """The node row, and the phases of a cold and of a warm task."""
    return _handler_row(
        payload, task_root, runs, name="node",
        measured="trivial Node handler through the full handler (cached bundle)",
        floor="the Node client (same argv and env) against a bare Runtime API server",
        target=1.15)


def payload_row(payload: dict[str, Any], task_root: Path, runs: int) -> Row:
    """The payload row: a response of `bytes:N` posted by the Rust bootstrap, timed by the
    bootstrap itself from its first byte written to the 202 read, through the emulation and
    through a raw loopback socket."""
    spec = child_of(payload, task_root)
    event = _event(payload)

    def emulation() -> float:
        return _post_seconds(handle(payload)["logs"]["tail"])

    def raw() -> float:
        served = serve_one(spec.argv, spec.env, task_root, event, stop=False)
        return _post_seconds(served.stdout.decode())

    size = int(payload["bundle"]["handler"].removeprefix("bytes:"))
    times = interleaved({"emulation": emulation, "raw": raw}, runs=runs, warmup=2)
    return ratio_row("payload", f"a {size / 1e6:.0f} MB response posted through the emulation",
                     f"the same {size / 1e6:.0f} MB posted to a raw loopback socket",
                     times, kind="time", target=3.0, measured_key="emulation", floor_key="raw",
                     response_bytes=size)


def _post_seconds(output: str) -> float:
    for line in output.splitlines():
        if line.rpartition("] ")[2].startswith("POST_NS "):
            return int(line.rpartition("] ")[2].split()[1]) / 1e9
    raise RuntimeError(f"the bootstrap printed no POST_NS line: {output!r}")


def containment_costs(runs: int, task_root: Path) -> dict[str, Any]:
    """Each containment step on its own, in milliseconds (no target: for the breakdown), and
    the child's spawn by the floor's path and by the contained one (`task_root` holds the
    bootstrap, which exits at once without a Runtime API to talk to)."""
    from runner.app import SETTINGS
    from runner.containment import Containment, procfs, scratch, sysvipc
    from runner.invoke.child import Child, ChildSpec

    keep = [SETTINGS.work_root / "cache"]
    containment = Containment.start(SETTINGS, keep=keep)
    uid = containment.controls.child_uid
    plain = ChildSpec(argv=[str(task_root / "bootstrap")], cwd=task_root, env={})
    with containment.attempt("bench/1") as attempt:
        contained = replace(plain, confinement=attempt.confinement(TIMEOUT_MS_FOR_LIMITS))

    def timed(step: Callable[[], object]) -> Callable[[], float]:
        def run() -> float:
            started = time.perf_counter()
            step()
            return time.perf_counter() - started
        return run

    def sweep() -> float:
        with containment.attempt("bench/1") as attempt:
            started = time.perf_counter()
            attempt.sweep()
            return time.perf_counter() - started

    def spawn(spec: ChildSpec) -> Callable[[], float]:
        def run() -> float:
            started = time.perf_counter()
            child = Child(spec)
            seconds = time.perf_counter() - started
            child.stop(0)
            child.close()
            return seconds
        return run

    contenders = {
        "Containment.start (cold start: harden, probe, clean)":
            timed(lambda: Containment.start(SETTINGS, keep=keep)),
        "an empty attempt (work dir, /proc scan, sweep, cleanup)":
            timed(lambda: _empty_attempt(containment)),
        "process sweep, nothing to kill (one /proc scan)": sweep,
        "scratch dirs cleanup (files of the sandbox uid)":
            timed(lambda: scratch.remove_owned(SETTINGS.scratch_dirs, uid,
                                               keep=[SETTINGS.work_root])),
        "System V IPC listing": timed(lambda: list(sysvipc.objects())),
        "one /proc scan (procfs.table)": timed(procfs.table),
        "spawn, the floor's way (vfork, nothing else)": spawn(plain),
        "spawn, contained (the spawner: uid, rlimits, keyrings, filter)": spawn(contained),
    }
    times = interleaved(contenders, runs=runs)
    return {name: summary(values) for name, values in times.items()}


#: The task timeout the contained spawn's CPU limit is computed for (any will do).
TIMEOUT_MS_FOR_LIMITS = 30_000


def _empty_attempt(containment: Any) -> None:
    with containment.attempt("bench/1"):
        pass
