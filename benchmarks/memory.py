"""The memory row: how much the runner's resident memory grows for a large bundle, from fetch
to result, in a fresh warm runner process (a worker started by the suite).

A small task runs first (so the lazily imported S3 client is loaded, as in any warm
environment); then the kernel's high-water mark is reset (`/proc/self/clear_refs`, 5) and the
large bundle's task runs cold: credentials, fetch and verify, cache, extract, run, result. The
growth is the high-water mark minus the resident size before the task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.invoke import handle
from benchmarks.report import Row

_STATUS = Path("/proc/self/status")


def _kib(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_growth(warmup: dict[str, Any], payload: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Megabytes the high-water mark rose above the resident size while `payload` ran."""
    handle(warmup)
    before = _kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark restarts from now
    result = handle(payload)
    peak = _kib("VmHWM")
    growth_mb = (peak - before) / 1024
    return growth_mb, {"rss_before_mb": round(before / 1024, 1),
                       "peak_mb": round(peak / 1024, 1),
                       "bundle_bytes": result["bundle"]["bytes"],
                       "timings_ms": result["timings_ms"]}


def row(growths: list[tuple[float, dict[str, Any]]]) -> Row:
    """The memory row from one or more fresh processes: the largest growth counts."""
    worst, details = max(growths, key=lambda item: item[0])
    size = details["bundle_bytes"]
    return Row("memory", f"peak RSS growth, {size / 1e6:.0f} MB bundle, fetch to result", "-",
               "megabytes", 64, round(worst, 1),
               {"processes": len(growths), "growths_mb": [round(g, 1) for g, _ in growths],
                **details})
