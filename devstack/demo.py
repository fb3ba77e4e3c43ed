"""`udf-runner demo` (the README's `make run`): every sample task in events/ run end to end
through the function's own code on a local stack, each result checked against what it shows.

The Rust/Polars sample (`devstack.transfer_stats`) runs too once its build is in the cache. A cold
build of it takes longer than the rest of `make run` on a small machine (the README gives the
figures), so the demo never waits for it: it starts the build in the background, says where its
log is, and runs the sample on a later `make run`.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from devstack import transfer_stats
from devstack.build_cache import ToolchainMissing
from devstack.local_run import LocalRunner, local_runner
from devstack.samples import EVENTS

#: What each sample task shows: the error type it must end with (None: it must succeed).
EXPECTED: dict[str, str | None] = {
    "provided-success.json": None,
    "nodejs-success.json": None,
    "provided-handler-error.json": "Function.Error",
    "nodejs-handler-error.json": "Function.Error",
    "integrity-mismatch.json": "Bundle.IntegrityMismatch",
    "timeout.json": "Sandbox.Timedout",
    "invalid-payload.json": "Task.InvalidPayload",
}


def run_demo(out: TextIO = sys.stdout) -> int:
    """Run the sample tasks; 0 when each ended as expected."""
    polars, note = _polars_sample()  # first: a background build must start outside the runner
    tasks = {name: json.loads((EVENTS / name).read_text()) for name in EXPECTED}
    expected = dict(EXPECTED)
    failures = 0
    with local_runner() as runner:
        runner.upload_samples()
        if polars is not None:
            tasks[transfer_stats.TASK.name] = _uploaded(runner, polars)
            expected[transfer_stats.TASK.name] = None
        for name, payload in tasks.items():
            failures += _show(out, name, runner.run(payload), expected[name])
    out.write(f"\n{len(tasks) - failures} of {len(tasks)} sample tasks ended as expected\n")
    if note:
        out.write(f"\n{note}\n")
    return 1 if failures else 0


def _polars_sample() -> tuple[bytes | None, str]:
    """The Rust/Polars sample's zip when built, else None and what is being done about it."""
    try:
        build = transfer_stats.Background()
    except ToolchainMissing as e:
        return None, f"transfer-stats (Rust/Polars) skipped: {e}"
    built = build.built()
    if built is not None:
        return built.read_bytes(), ""
    failed_before = build.log.exists()
    if not build.start():
        return None, (f"transfer-stats (Rust/Polars): still building in the background; its log: "
                      f"{build.log} (it ends with `ready in …` when done). Run `make run` again "
                      f"then to see the sample.")
    again = " The last build did not finish; started again." if failed_before else ""
    return None, (f"transfer-stats (Rust/Polars): not built yet.{again} Its cold build (Polars) "
                  f"takes {transfer_stats.COLD_BUILD}, so it now runs in the background; its "
                  f"log: {build.log} (it ends with `ready in …` when done). Run `make run` "
                  f"again then to see the sample.")


def _uploaded(runner: LocalRunner, bundle: bytes) -> dict[str, Any]:
    payload = transfer_stats.payload(bundle)
    runner.access.upload_bundle(bundle, payload["bundle"]["uri"])
    return payload


def _show(out: TextIO, name: str, result: dict[str, Any], expected: str | None) -> int:
    error = result.get("error") or {}
    got = error.get("type")
    timings = ", ".join(f"{phase} {ms} ms" for phase, ms in result.get("timings_ms", {}).items())
    mark = "ok" if got == expected else f"UNEXPECTED (wanted {expected or 'success'})"
    out.write(f"\n== {name}: {result.get('status')}{f' {got}' if got else ''} [{mark}]\n")
    if got:
        out.write(f"   error: {error.get('message')}\n")
    else:
        out.write(f"   response: {_abridged(result.get('response'))}\n")
    out.write(f"   timings: {timings}\n")
    return 0 if got == expected else 1


def _abridged(value: Any, limit: int = 600) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + " …"
