"""The runner's metrics are EMF with a duration per phase, bundle bytes, cache hits and one
outcome per result by error type."""

from __future__ import annotations

import json
from contextlib import ExitStack
from typing import Any

import pytest

from runner import observability
from runner.observability import Phases, metrics, record_result


@pytest.fixture(autouse=True)
def _metrics_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)
    # Pipelines run by other tests add to the shared object; the handler's decorator would
    # have flushed them.
    metrics.clear_metrics()


def _emitted(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]


def test_a_result_emits_phase_durations_bundle_bytes_cache_hit_and_its_outcome(
        capsys: pytest.CaptureFixture[str]) -> None:
    record_result({"fetch": 12, "total": 30}, error_type="Bundle.IntegrityMismatch",
                  bundle_bytes=1234, cache_hit=False)
    metrics.flush_metrics()

    blobs = _emitted(capsys)
    outcome = next(b for b in blobs if "Outcome" in b)
    assert (outcome["ErrorType"], outcome["Outcome"]) == ("Bundle.IntegrityMismatch", [1.0])
    main = next(b for b in blobs if "FetchDuration" in b)
    assert (main["FetchDuration"], main["TotalDuration"]) == ([12.0], [30.0])
    assert (main["BundleBytes"], main["CacheHit"], main["Failed"]) == ([1234.0], [0.0], [1.0])
    assert main["_aws"]["CloudWatchMetrics"][0]["Namespace"] == observability.metrics.namespace


def test_phases_add_up_and_report_a_total() -> None:
    ticks = iter([100.0, 100.25, 100.275, 101.5])  # start, extract's start and end, finish
    phases = Phases(clock=lambda: next(ticks))
    phases.add("credentials", 0.010)
    phases.add("credentials", 0.005)
    with phases("extract"):
        pass

    timings = phases.finish()

    assert timings == {"credentials": 15, "extract": 25, "total": 1500}


def test_blocks_of_a_phase_at_the_same_time_count_once() -> None:
    # start; mint A from 1 s, mint B from 2 s, B ends at 3 s, A at 5 s; a query 6-7 s; finish.
    ticks = iter([0.0, 1.0, 2.0, 3.0, 5.0, 6.0, 7.0, 8.0])
    phases = Phases(clock=lambda: next(ticks))
    with ExitStack() as both:
        both.enter_context(phases("credentials"))
        both.enter_context(phases("credentials"))
    with phases("queries"):
        pass

    assert phases.finish() == {"credentials": 4000, "queries": 1000, "total": 8000}
