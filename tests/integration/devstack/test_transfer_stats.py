"""The Rust/Polars sample (samples/transfer-stats) as a user runs its task: built by cargo-lambda,
then `udf-runner run-task --bundle`. What it answers and what it wrote to its output prefix are
checked against the same per-token aggregation done here, in Python, on the dataset's rows."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from devstack import datasets, transfer_stats
from devstack.stack import LocalStack

REPO = Path(__file__).resolve().parents[3]
UDF_RUNNER = REPO / ".venv" / "bin" / "udf-runner"
OUTPUT = "transfer-stats.json"


def _run_task(payload: dict[str, Any], bundle: Path, stack: LocalStack, work_root: Path,
              outputs: Path) -> dict[str, Any]:
    path = outputs.parent / "task.json"
    path.write_text(json.dumps(payload))
    env = {**os.environ, **stack.access.to_environ(), "UDF_RUNNER_WORK_ROOT": str(work_root)}
    done = subprocess.run([str(UDF_RUNNER), "run-task", str(path), "--bundle", str(bundle),
                           "--outputs", str(outputs), "--json"],
                          capture_output=True, text=True, env=env, check=False, timeout=300)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _per_token() -> list[dict[str, Any]]:
    """Transfers, total and largest value, distinct senders of each token, in token order."""
    table = datasets.generate().tables["erc20_transfers"]
    tokens: dict[str, list[Any]] = {}
    for token, sender, value in zip(table["token"], table["from"], table["value"], strict=True):
        count, total, largest, senders = tokens.get(token, [0, 0, 0, set()])
        tokens[token] = [count + 1, total + int(value), max(largest, int(value)),
                         senders | {sender}]
    return [{"token": token, "transfers": count, "total_value": str(total),
             "largest_value": str(largest), "distinct_senders": len(senders)}
            for token, (count, total, largest, senders) in sorted(tokens.items())]


def test_the_polars_sample_summarises_the_query_rows_and_writes_its_summary(
        transfer_stats_zip: Path, local_stack: LocalStack, work_root: Path,
        tmp_path: Path) -> None:
    payload = transfer_stats.payload(transfer_stats_zip.read_bytes())
    prefix = payload["outputs"]["s3_prefix"]

    result = _run_task(payload, transfer_stats_zip, local_stack, work_root, tmp_path / "out")

    assert result["status"] == "succeeded", result["error"]
    summary = {"query": "transfers", "truncated": False, "tokens": _per_token()}
    assert result["response"] == {**summary, "output": f"{prefix}{OUTPUT}"}
    assert json.loads((tmp_path / "out" / OUTPUT).read_text()) == summary


def test_the_polars_sample_names_a_missing_input_query(transfer_stats_zip: Path,
                                                       local_stack: LocalStack,
                                                       work_root: Path, tmp_path: Path) -> None:
    payload = transfer_stats.payload(transfer_stats_zip.read_bytes())
    payload["event"] = {"query": "whales"}

    result = _run_task(payload, transfer_stats_zip, local_stack, work_root, tmp_path / "out")

    assert result["error"]["type"] == "Function.Error"
    assert result["error"]["message"] == ('InvalidInput: the task has no input query named '
                                          '"whales" (trace_inputs.queries)')
