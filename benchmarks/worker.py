"""A fresh runner process for the rows timed inside one: `python -m benchmarks.worker JOB OUT`.

The suite writes the job (JSON) and starts this with the runner's environment (its settings,
the local stack's endpoints, Powertools' variables); the handler module is imported here, as
Lambda imports it. The result (JSON) goes to OUT: stdout is the function's log, as in Lambda.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks import breakdown, invoke, memory, network


def run(job: dict[str, Any]) -> dict[str, Any]:
    """Run `job` ("invoke", "breakdown", "network" or "memory") and return what it measured."""
    if job["kind"] == "network":
        return {"row": network.row(job["task"], job["local"], job["endpoints"],
                                   runs=job["runs"], delay_ms=job["delay_ms"]).to_json()}
    if job["kind"] == "memory":
        growth, details = memory.peak_growth(job["warmup"], job["payload"])
        return {"growth_mb": growth, "details": details}
    runs = job["runs"]
    if job["kind"] == "breakdown":
        return {"breakdown_ms": {"provided": breakdown.measure(job["provided"], runs),
                                 "nodejs": breakdown.measure(job["node"], runs)}}
    warm, warm_phases = invoke.warm_invoke(job["provided"], Path(job["provided_root"]), runs)
    node, node_phases = invoke.node(job["node"], Path(job["node_root"]), job["node_runs"])
    payload = invoke.payload_row(job["payload"], Path(job["provided_root"]), job["payload_runs"])
    return {
        "rows": [warm.to_json(), node.to_json(), payload.to_json()],
        "phases": {"provided": warm_phases, "nodejs": node_phases},
        "containment_ms": invoke.containment_costs(runs, Path(job["provided_root"])),
    }


def main() -> None:
    job_path, out_path = map(Path, sys.argv[1:3])
    result = run(json.loads(job_path.read_text()))
    out_path.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
