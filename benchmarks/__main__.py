"""`python -m benchmarks [--quick] [--only GROUP]... [--runs N] [--out PATH] [--strict]`: run
the suite, print the table, write the report as JSON (benchmarks/results/latest.json; quick.json
with --quick, partial.json with --only).

--quick runs small sizes and few repetitions: it checks that every row produces a number, not
what the number is (CI machines are noisy). --only runs some groups of rows (cold, network,
cli, invoke, bytes, memory), --runs sets the repetitions of the invoke, cold, network and cli
rows, --strict fails when a row misses its target.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks import fixtures, report, suite


def render(result: dict[str, Any]) -> str:
    """The report as text: the machine, the table, the phases and the containment costs."""
    rows = [report.Row.from_json(row) for row in result["rows"]]
    described = result["machine"]
    lines = [
        f"udf-runner benchmarks ({result['mode']}, {result['seconds']} s)",
        f"machine: {described['cpu']} ({', '.join(described['cpu_flags'])}"
        f"{', a VM' if described['hypervisor'] else ''}), {described['cpus_usable']} CPUs, "
        f"kernel {described['kernel']}, {described['os']}, Python {described['python']}, "
        f"{described['processes']} processes ({described['kernel_threads']} kernel threads)",
        f"work dir: {described['work_dir_filesystem']}, {described['work_dir_device']}; "
        f"isolation {described['isolation']} (sandbox uid {result['sandbox_uid']})",
        "",
        report.table(rows, verdicts=result["mode"] == "full"),
        *(f"  {row.name}: run_invocation alone (the emulation, no pipeline or containment) "
          f"{row.details['run_invocation_alone_ms']['median']:.2f} ms"
          for row in rows if "run_invocation_alone_ms" in row.details),
    ]
    if result["phases_ms"]:
        lines += [
            "",
            "phases (timings_ms):",
            *(f"  {runtime:<9} {which:<10} {json.dumps(timings)}"
              for runtime, tasks in result["phases_ms"].items()
              for which, timings in tasks.items()),
            "",
            "containment steps on their own (median ms):",
            *(f"  {name:<58} {figures['median']:8.3f}"
              for name, figures in result["containment_ms"].items()),
            "",
            "a warm task step by step (median ms per task; provided, nodejs):",
            *(f"  {step:<58} {ms:8.3f} {result['breakdown_ms']['nodejs'].get(step, 0.0):8.3f}"
              for step, ms in result["breakdown_ms"]["provided"].items()),
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    parser.add_argument("--out", type=Path, help="where to write the JSON report")
    parser.add_argument("--strict", action="store_true", help="fail when a target is missed")
    parser.add_argument("--only", action="append", choices=suite.GROUPS,
                        help="run only these groups of rows (repeatable)")
    parser.add_argument("--runs", type=int,
                        help="repetitions of the invoke, cold, network and cli rows "
                             "(default: the mode's)")
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    groups = tuple(args.only or suite.GROUPS)
    sizes = suite.QUICK if args.quick else suite.FULL
    if args.runs:
        sizes = replace(sizes, invoke_runs=args.runs, node_runs=args.runs,
                        payload_runs=args.runs, cold_runs=args.runs,
                        network_runs=args.runs, cli_runs=args.runs)
    result = suite.run(sizes, mode, groups)
    name = "quick" if args.quick else "latest" if groups == suite.GROUPS else "partial"
    out = args.out or fixtures.RESULTS / f"{name}.json"
    report.write(out, result)
    print(render(result))
    print(f"\nwritten to {out}")
    missing = suite.incomplete(result)
    if missing:
        print(f"no figure for: {', '.join(missing)}", file=sys.stderr)
        return 1
    missed = [row["name"] for row in result["rows"] if not row["passed"]]
    if args.strict and missed:
        print(f"targets missed: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
