"""Interleaved repetitions and their medians."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping

#: A contender: runs once and returns the seconds it measured (so set-up can be left out).
Contender = Callable[[], float]


def interleaved(contenders: Mapping[str, Contender], *, runs: int,
                warmup: int = 1) -> dict[str, list[float]]:
    """Each contender's times over `runs` rounds after `warmup` untimed ones. Every round runs
    each contender once, in reversed order every other round (A B, B A ...), so that neither
    always runs first on a warmed-up machine."""
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for index in range(warmup + runs):
        order = names if index % 2 == 0 else names[::-1]
        for name in order:
            seconds = contenders[name]()
            if index >= warmup:
                times[name].append(seconds)
    return times


def median(values: list[float]) -> float:
    """The median of `values`."""
    return statistics.median(values)


def summary(values: list[float], scale: float = 1000.0) -> dict[str, float | int]:
    """Median, minimum and maximum (in milliseconds by default) and the number of runs."""
    return {"median": round(median(values) * scale, 3), "min": round(min(values) * scale, 3),
            "max": round(max(values) * scale, 3), "runs": len(values)}
