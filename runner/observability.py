"""Logs and metrics of the runner (Powertools), and the timing of each phase.

Logs are JSON with `task_id`, `attempt` and `bundle_sha256` as keys (and Lambda's
`xray_trace_id`); the capability token and minted credentials are never logged. Metrics are EMF:
a duration per phase, bundle bytes, cache hits, and one `Outcome` count per result with its
error type as a dimension. The phase timings are also in every result (`timings_ms`) and in its
log line.

Traces are Lambda's own (active tracing: the Initialization and Invocation segments of every
sampled request), without an X-Ray SDK in the process: the SDK's import and its patching of
botocore cost about a third of the cold start, which every new tenant pays, and only added
subsegments whose durations the result, the log line and the metrics already carry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from runner.settings import PowertoolsNames

__all__ = ["Phases", "logger", "metrics", "record_result"]

_NAMES = PowertoolsNames.from_env()
logger = Logger(service=_NAMES.service)
metrics = Metrics(namespace=_NAMES.metrics_namespace)


class Phases:
    """Wall time of each phase of one attempt, in milliseconds.

    A phase's time is how long at least one block of it was running: blocks one after another
    add up, blocks at the same time (two mints, three queries in the pipeline's threads) count
    once, so that `credentials` or `queries` is what the attempt spent waiting on them.
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._spans: dict[str, list[tuple[float, float]]] = {}
        self._added: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        """Time the block as part of phase `name`."""
        start = self._clock()
        try:
            yield
        finally:
            with self._lock:
                self._spans.setdefault(name, []).append((start, self._clock()))

    def add(self, name: str, seconds: float) -> None:
        """Record `seconds` of phase `name` measured elsewhere (the invocation's own phases)."""
        with self._lock:
            self._spans.setdefault(name, [])
            self._added[name] = self._added.get(name, 0.0) + seconds

    def finish(self) -> dict[str, int]:
        """All timings, with `total` since the attempt started."""
        with self._lock:
            timings = {name: round((_covered(spans) + self._added.get(name, 0.0)) * 1000)
                       for name, spans in self._spans.items()}
        timings["total"] = round((self._clock() - self._started) * 1000)
        return timings


def _covered(spans: list[tuple[float, float]]) -> float:
    """Seconds covered by the union of `spans`."""
    covered, reached = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reached:
            covered += end - max(start, reached)
            reached = end
    return covered


def record_result(timings_ms: dict[str, int], *, error_type: str | None,
                  bundle_bytes: int | None, cache_hit: bool | None) -> None:
    """Emit the attempt's metrics."""
    for name, value in timings_ms.items():
        metrics.add_metric(name=f"{name.capitalize()}Duration", unit=MetricUnit.Milliseconds,
                           value=value)
    if bundle_bytes is not None:
        metrics.add_metric(name="BundleBytes", unit=MetricUnit.Bytes, value=bundle_bytes)
    if cache_hit is not None:
        metrics.add_metric(name="CacheHit", unit=MetricUnit.Count, value=int(cache_hit))
    metrics.add_metric(name="Failed" if error_type else "Succeeded", unit=MetricUnit.Count,
                       value=1)
    if is_metrics_disabled():
        return
    # Flushed on its own so that the error type can be a dimension of this metric alone.
    with single_metric(name="Outcome", unit=MetricUnit.Count, value=1,
                       namespace=metrics.namespace,
                       default_dimensions=metrics.default_dimensions) as outcome:
        outcome.add_dimension(name="ErrorType", value=error_type or "None")
