"""`udf-runner demo` (the README's `make run`): every sample task in events/ run end to end
through the function's own code on a local stack, each result checked against what it shows."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from devstack.local_run import local_runner
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
    failures = 0
    with local_runner() as runner:
        runner.upload_samples()
        for name, expected in EXPECTED.items():
            result = runner.run(json.loads((EVENTS / name).read_text()))
            failures += _show(out, name, result, expected)
    out.write(f"\n{len(EXPECTED) - failures} of {len(EXPECTED)} sample tasks ended as expected\n")
    return 1 if failures else 0


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
