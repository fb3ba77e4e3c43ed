"""The Rust/Polars sample (samples/transfer-stats) as a user runs its task: built by cargo-lambda,
then `udf-runner run-task --bundle`. What it answers and what it wrote to its output prefix are
checked against the same per-token aggregation done here, in Python, on the dataset's rows.
The local stack's S3 is plain http; real S3 is https, which a local TLS server stands in for."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devstack import datasets, transfer_stats
from devstack.stack import LocalStack
from runner.platform import ScopedCredentials
from runner.settings import Settings
from tests.support import fixture_bundles
from tests.support.certificates import self_signed

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


@contextmanager
def _tls_server(folder: Path) -> Iterator[tuple[str, list[str]]]:
    """An https endpoint that takes one connection; the list gets how its handshake ended."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed(folder))
    handshakes: list[str] = []
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(60)

        def serve() -> None:
            with server.accept()[0] as connection:
                try:
                    context.wrap_socket(connection, server_side=True).close()
                    handshakes.append("completed")
                except ssl.SSLError as e:
                    handshakes.append(e.reason or str(e))

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            yield f"https://127.0.0.1:{server.getsockname()[1]}", handshakes
        finally:
            thread.join()


def test_the_polars_sample_writes_over_tls_and_checks_the_certificate(
        transfer_stats_zip: Path, settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    with zipfile.ZipFile(transfer_stats_zip) as archive:
        archive.extractall(folder)
    (folder / "bootstrap").chmod(0o755)
    rows = {"columns": [{"name": name, "type": "VARCHAR"} for name in ("token", "from", "value")],
            "rows": [["0xa0b8", "0x01", "5"]], "truncated": False}
    event = {"trace_inputs": {"queries": {"transfers": rows}}}

    with _tls_server(tmp_path) as (endpoint, handshakes):
        run = fixture_bundles.invoke(
            folder, settings, event=json.dumps(event).encode(), s3_endpoint_url=endpoint,
            credentials=ScopedCredentials("AKIDEXAMPLE", "secret", "session-token"))

    # The client spoke TLS, and refused a certificate no trusted authority signed.
    assert run.result.error is not None
    assert run.result.error.message == (
        f"OutputFailed: PUT {endpoint}/udf-outputs/test-task/transfer-stats.json: io: invalid "
        "peer certificate: UnknownIssuer")
    assert len(handshakes) == 1
    assert handshakes != ["completed"]
