"""Where a warm task's time goes, step by step (for the docs; no target).

Run inside a worker: the runner functions each step is made of are wrapped, in this process
only, with a timer; the warm task then runs `runs` times and each step's median per task is
reported, with what is left ("other": the attempt's directories, the Powertools decorators,
the driver's pipes and polling, whatever no step names).
"""

from __future__ import annotations

import functools
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from benchmarks.invoke import handle

#: (module, attribute path, label): the steps of a warm task, in the order they run.
STEPS = [
    ("runner.pipeline", "parse_payload", "payload validation"),
    ("runner.platform.capability", "check", "token claims"),
    ("runner.bundle.cache", "BundleCache.lookup", "cache lookup (re-hash of the zip)"),
    ("runner.containment.environment", "Containment._starting_set",
     "processes at attempt start (the runner's tree)"),
    ("runner.bundle.extract", "extract", "extract"),
    ("runner.runtimes", "child_spec", "entrypoint checks, child environment"),
    ("runner.runtime_api.server", "RuntimeApiServer.start", "Runtime API server start"),
    ("runner.invoke.child", "Child.__init__",
     "spawn (the spawner: fork, uid, rlimits, keyrings, filter, exec)"),
    ("runner.invoke.driver", "_Waiter.until", "child: exec to answer, then its log flush"),
    ("runner.invoke.child", "Child.stop", "stop the child (signals, /proc scan of its group)"),
    ("runner.containment.reaper", "sweep", "process sweep (a /proc scan; again only if needed)"),
    ("runner.containment.scratch", "remove_owned", "scratch dirs cleanup"),
    ("runner.containment.sysvipc", "objects", "System V IPC listing"),
    ("runner.runtime_api.server", "RuntimeApiServer.stop", "Runtime API server stop"),
    ("runner.containment.workdir", "remove_tree", "remove the attempt dir"),
    ("runner.pipeline", "Pipeline._finish", "result, metrics, log line"),
]


class _Timers:
    """Time spent per step; a step called inside another timed one counts for the outer one
    (a sweep's /proc scans are the sweep's)."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)
        self._depth = 0

    def wrap(self, owner: Any, name: str, label: str) -> Callable[[], None]:
        """Time `owner.name` as `label`; returns what undoes it."""
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._depth:
                return original(*args, **kwargs)
            self._depth += 1
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.spent[label] += time.perf_counter() - started
                self._depth -= 1

        setattr(owner, name, timed)
        return lambda: setattr(owner, name, original)


def measure(payload: dict[str, Any], runs: int) -> dict[str, float]:
    """Median milliseconds of each step per warm task, "other" and "total"."""
    import importlib

    handle(payload)  # the bundle is cached from here on
    timers = _Timers()
    undo = []
    for module_name, path, label in STEPS:
        owner: Any = importlib.import_module(module_name)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        undo.append(timers.wrap(owner, name, label))
    per_run: dict[str, list[float]] = defaultdict(list)
    try:
        for _ in range(runs):
            timers.spent.clear()
            started = time.perf_counter()
            handle(payload)
            total = time.perf_counter() - started
            for _, _, label in STEPS:
                per_run[label].append(timers.spent[label])
            per_run["other"].append(total - sum(timers.spent.values()))
            per_run["total"].append(total)
    finally:
        for restore in reversed(undo):
            restore()
    return {label: round(statistics.median(values) * 1000, 3)
            for label, values in per_run.items()}
