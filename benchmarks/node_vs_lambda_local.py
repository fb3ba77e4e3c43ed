"""Whole-process time of a trivial Node handler: `udf-runner invoke` against `lambda-local`.

Both run tests/fixtures/node/handlers/trivial on the same Node (the layer's), from a cold process
each time: `udf-runner invoke --runtime nodejs` (Python start, the Runtime API emulation, Node
on the official client, teardown) and `lambda-local` (npm; the handler called in-process by a
Node script, no Runtime API at all). The runs alternate so that drift on a shared machine hits
both alike; the medians are the figure.

    .venv/bin/python benchmarks/node_vs_lambda_local.py [--runs 21] [--json]

Needs `make setup` (the layer and tests/fixtures/node/node_modules).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYER = REPO / "layers" / "nodejs" / "build"
NODE = LAYER / "bin" / "node"
FIXTURES = REPO / "tests" / "fixtures" / "node"
HANDLER_DIR = FIXTURES / "handlers" / "trivial"
LAMBDA_LOCAL = FIXTURES / "node_modules" / "lambda-local" / "build" / "cli.js"
UDF_RUNNER = Path(sys.executable).parent / "udf-runner"
EVENT = {"hello": "world"}


def _time(argv: Sequence[str], env: dict[str, str]) -> float:
    """Seconds from spawn to exit of one run, which must succeed."""
    started = time.perf_counter()
    done = subprocess.run(list(argv), env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({done.returncode}):\n"
                         f"{done.stdout.decode()}{done.stderr.decode()}")
    return elapsed


def commands(event_file: Path, work_root: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """The two contenders: argv and environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("UDF_RUNNER_")}
    return {
        "udf-runner invoke": (
            [str(UDF_RUNNER), "invoke", "--runtime", "nodejs", "--handler", "index.handler",
             "--event", str(event_file), "--json", str(HANDLER_DIR)],
            {**base, "UDF_RUNNER_WORK_ROOT": str(work_root),
             "UDF_RUNNER_NODE_LAYER": str(LAYER)},
        ),
        "lambda-local": (
            [str(NODE), str(LAMBDA_LOCAL), "--lambda-path", str(HANDLER_DIR / "index.js"),
             "--handler", "handler", "--event-path", str(event_file), "--timeout", "30",
             "--verboselevel", "0"],
            base,
        ),
    }


def measure(runs: int, warmup: int) -> dict[str, list[float]]:
    """Each contender's times in seconds, after `warmup` untimed runs of each."""
    with tempfile.TemporaryDirectory(prefix="node-bench-") as scratch:
        event_file = Path(scratch) / "event.json"
        event_file.write_text(json.dumps(EVENT))
        work_root = Path(scratch) / "work"
        contenders = commands(event_file, work_root)
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for index in range(warmup + runs):
            for name, (argv, env) in contenders.items():
                elapsed = _time(argv, env)
                if index >= warmup:
                    times[name].append(elapsed)
    return times


def summary(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Median, min and max per contender, in milliseconds."""
    return {name: {"median_ms": round(statistics.median(values) * 1000, 1),
                   "min_ms": round(min(values) * 1000, 1),
                   "max_ms": round(max(values) * 1000, 1),
                   "runs": len(values)}
            for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args()
    for needed in (NODE, LAMBDA_LOCAL, UDF_RUNNER):
        if not needed.exists():
            raise SystemExit(f"{needed} is missing: run `make setup`")
    figures = summary(measure(args.runs, args.warmup))
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    node_version = subprocess.run([str(NODE), "--version"], capture_output=True, text=True,
                                  check=True).stdout.strip()
    print(f"trivial Node handler, whole process, Node {node_version}, {os.cpu_count()} CPUs")
    for name, figure in figures.items():
        print(f"  {name:<18} median {figure['median_ms']:7.1f} ms  "
              f"(min {figure['min_ms']:.1f}, max {figure['max_ms']:.1f}, {figure['runs']} runs)")
    ratio = figures["udf-runner invoke"]["median_ms"] / figures["lambda-local"]["median_ms"]
    print(f"  ratio              {ratio:.2f}x")


if __name__ == "__main__":
    main()
