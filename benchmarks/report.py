"""A row of the table: what was measured, against which floor, the ratio, and the verdict."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from benchmarks.stats import median, summary

#: "time": the ratio is measured time / floor time (lower is better, target is a ceiling);
#: "throughput": floor time / measured time on the same bytes (higher is better, a floor);
#: "memory": measured MiB / floor MiB (lower is better, target is a ceiling);
#: "megabytes": the row is an amount, not a ratio (a ceiling).
Kind = Literal["time", "throughput", "memory", "megabytes"]


@dataclass
class Row:
    """One row of the table."""

    name: str
    measured: str
    floor: str
    kind: Kind
    target: float
    value: float  # the ratio (or megabytes)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether the value meets the target."""
        return self.value >= self.target if self.kind == "throughput" else self.value <= self.target

    @property
    def target_text(self) -> str:
        """The target as the issue writes it."""
        if self.kind == "throughput":
            return f">= {self.target:g}x throughput"
        if self.kind == "megabytes":
            return f"<= {self.target:g} MB"
        return f"<= {self.target:g}x"

    @property
    def value_text(self) -> str:
        """The value with its unit."""
        return f"{self.value:.1f} MB" if self.kind == "megabytes" else f"{self.value:.2f}x"

    def to_json(self) -> dict[str, Any]:
        """The row as written to the results file."""
        return {**asdict(self), "target_text": self.target_text, "passed": self.passed}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Row:
        """A row read back from `to_json`'s output."""
        return cls(**{k: v for k, v in data.items() if k not in ("target_text", "passed")})


def ratio_row(name: str, measured: str, floor: str, times: dict[str, list[float]], *,
              kind: Kind, target: float, measured_key: str, floor_key: str,
              **details: Any) -> Row:
    """A row from interleaved times: the ratio of the two medians, and each one's summary."""
    ours, base = median(times[measured_key]), median(times[floor_key])
    value = base / ours if kind == "throughput" else ours / base
    unit, scale = ("mib", 1.0) if kind == "memory" else ("ms", 1000.0)
    return Row(name, measured, floor, kind, target, round(value, 3),
               {f"measured_{unit}": summary(times[measured_key], scale),
                f"floor_{unit}": summary(times[floor_key], scale), **details})


def table(rows: list[Row], *, verdicts: bool = True) -> str:
    """The rows as a fixed-width text table; without `verdicts` (a quick run, whose sizes are
    too small for the figures to mean anything) the ok/MISS column is left blank."""
    lines = [f"{'row':<14} {'ratio':>9}  {'target':<22} {'':4} {'measured (median)':>18} "
             f"{'floor (median)':>15}"]
    for row in rows:
        unit = "MiB" if row.kind == "memory" else "ms"
        measured = row.details.get(f"measured_{unit.lower()}", {}).get("median")
        floor = row.details.get(f"floor_{unit.lower()}", {}).get("median")
        lines.append(
            f"{row.name:<14} {row.value_text:>9}  {row.target_text:<22} "
            f"{('ok' if row.passed else 'MISS') if verdicts else '':4} "
            f"{_figure(measured, unit):>18} {_figure(floor, unit):>15}")
    return "\n".join(lines)


def _figure(value: float | None, unit: str) -> str:
    return "" if value is None else f"{value:.2f} {unit}"


def write(path: Path, report: dict[str, Any]) -> None:
    """Write the report as JSON, making its folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
