"""Logs, metrics and traces of the runner (Powertools), and the timing of each phase.

Logs are JSON with `task_id`, `attempt` and `bundle_sha256` as keys; the capability token and
minted credentials are never logged. Metrics are EMF: a duration per phase, bundle bytes, cache
hits, and one `Outcome` count per result with its error type as a dimension. Each phase is an
X-Ray subsegment.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from runner.settings import PowertoolsNames

__all__ = ["Phases", "logger", "metrics", "record_result", "tracer"]

_NAMES = PowertoolsNames.from_env()
logger = Logger(service=_NAMES.service)
metrics = Metrics(namespace=_NAMES.metrics_namespace)
tracer = Tracer()


class Phases:
    """Wall time of each phase of one attempt, in milliseconds."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.timings_ms: dict[str, int] = {}
        self._clock = clock
        self._started = clock()

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        """Time the block as phase `name` (repeated phases add up), in its own subsegment."""
        start = self._clock()
        try:
            with tracer.provider.in_subsegment(f"## {name}"):
                yield
        finally:
            self.add(name, self._clock() - start)

    def add(self, name: str, seconds: float) -> None:
        """Record `seconds` of phase `name`."""
        self.timings_ms[name] = self.timings_ms.get(name, 0) + round(seconds * 1000)

    def finish(self) -> dict[str, int]:
        """All timings, with `total` since the attempt started."""
        self.timings_ms["total"] = round((self._clock() - self._started) * 1000)
        return dict(self.timings_ms)


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
