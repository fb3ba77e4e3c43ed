"""The cold import row: a fresh interpreter importing the handler module, against one importing
a bare Powertools + pydantic handler (`benchmarks.bare_handler`), with the same environment.

Importing `runner.app` is the runner's whole cold start: its imports, reading the settings,
and `Pipeline(...)`, which hardens the process and probes containment (`Containment.start`).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from benchmarks.report import Row, ratio_row
from benchmarks.stats import interleaved

MEASURED = "runner.app"
FLOOR = "benchmarks.bare_handler"


def _timed_import(module: str, env: Mapping[str, str], cwd: Path) -> Callable[[], float]:
    def run() -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], env=dict(env), cwd=cwd,
                       stdout=subprocess.DEVNULL, check=True)
        return time.perf_counter() - started
    return run


def import_profile(env: Mapping[str, str], cwd: Path, top: int = 12) -> list[dict[str, Any]]:
    """The modules with the largest own import time under `python -X importtime`."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {MEASURED}"],
                          env=dict(env), cwd=cwd, capture_output=True, text=True, check=True)
    entries: list[dict[str, Any]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = line.removeprefix("import time:").split("|")
        entries.append({"module": name.strip(), "self_ms": int(own) / 1000,
                        "cumulative_ms": int(cumulative) / 1000})
    return sorted(entries, key=lambda entry: -entry["self_ms"])[:top]


def row(env: Mapping[str, str], cwd: Path, runs: int) -> Row:
    """The cold import row."""
    times = interleaved({MEASURED: _timed_import(MEASURED, env, cwd),
                         FLOOR: _timed_import(FLOOR, env, cwd)}, runs=runs)
    return ratio_row("cold import", f"python -c 'import {MEASURED}' (imports and cold start)",
                     f"python -c 'import {FLOOR}' (Powertools Logger/Metrics/Tracer + pydantic)",
                     times, kind="time", target=1.3, measured_key=MEASURED, floor_key=FLOOR,
                     largest_own_import_ms=import_profile(env, cwd))
