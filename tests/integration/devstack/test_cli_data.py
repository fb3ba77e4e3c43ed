"""What goes in and comes out of a task (issue 15, item 5), through the real console command:
the datasets there are, unknown ones refused, truncated input queries said out loud, the task's
outputs saved before the stack goes, and the user's own bundle run for their own payload."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import urllib3

from devstack.bundles import zip_folder
from devstack.claims import Grant
from devstack.datasets import SCHEMAS
from devstack.outputs import save
from devstack.stack import LocalStack
from tests.integration.devstack.test_cli_loop import UDF_RUNNER, environ, versioned_bundle
from tests.support.tasks import PIPELINE_BOOTSTRAP

REPO = Path(__file__).resolve().parents[3]
SAMPLE_PAYLOAD = REPO / "events" / "provided-success.json"


def udf_runner(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(UDF_RUNNER), *args], capture_output=True, text=True, env=env,
                          check=False, timeout=300)


def _count_rows(stack: LocalStack, dataset: str) -> int:
    """The dataset's row count, asked of the stack's Query Service with a token for it."""
    token = stack.issue_token(Grant.for_task(
        task_id="count", attempt=1, bundle_uri="s3://udf-bundles/none.zip",
        bundle_sha256="0" * 64, datasets=[dataset]))
    reply = urllib3.request("POST", f"{stack.access.query_url}/v1/query",
                            json={"sql": f'SELECT count(*) FROM "{dataset}"'},  # noqa: S608 - a known name
                            headers={"Authorization": f"Bearer {token}"}, retries=False)
    body: Any = reply.json()
    return int(body["rows"][0][0])


def test_datasets_lists_names_columns_and_row_counts(local_stack: LocalStack,
                                                     work_root: Path) -> None:
    env = environ(work_root)
    listed = udf_runner("datasets", "--json", env=env)
    shown = udf_runner("datasets", env=env)

    assert listed.returncode == shown.returncode == 0, listed.stderr + shown.stderr
    datasets = json.loads(listed.stdout)
    assert [d["name"] for d in datasets] == sorted(SCHEMAS)
    for dataset in datasets:
        assert dataset["rows"] == _count_rows(local_stack, dataset["name"])
        assert [(c["name"], c["type"]) for c in dataset["columns"]] == \
            list(SCHEMAS[dataset["name"]])
        assert f"{dataset['name']} ({dataset['rows']} rows)" in shown.stdout
    assert re.search(r"^  value +DECIMAL\(38,0\)$", shown.stdout, re.MULTILINE)


def test_a_reader_that_went_away_ends_the_listing_quietly(local_stack: LocalStack,
                                                         work_root: Path) -> None:
    """`udf-runner datasets | head -1`: once the reader has gone, nothing is said about it and
    the status is a SIGPIPE's, not a usage error's."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    try:
        done = subprocess.run([str(UDF_RUNNER), "datasets"], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, env=environ(work_root),
                              check=False, timeout=300)
    finally:
        os.close(write_end)

    assert done.returncode == 128 + signal.SIGPIPE
    assert done.stderr == ""


def test_an_unknown_dataset_is_refused_naming_the_known_ones(work_root: Path) -> None:
    done = udf_runner("invoke", str(PIPELINE_BOOTSTRAP), "--dataset", "erc20_tokens",
                      "--dataset", "nope", env=environ(work_root))

    assert done.returncode == 2
    assert done.stdout == ""
    assert "--dataset nope" in done.stderr
    assert all(name in done.stderr for name in SCHEMAS)
    assert "udf-runner datasets" in done.stderr


def test_a_truncated_input_query_is_warned_about(work_root: Path,
                                                 local_stack: LocalStack) -> None:
    args = ["invoke", str(PIPELINE_BOOTSTRAP), "--handler", "echo", "--dataset", "erc20_tokens",
            "--query", "tokens=SELECT symbol FROM erc20_tokens ORDER BY symbol",
            "--query", "one=SELECT 1 AS x"]
    env = environ(work_root, local_stack, UDF_RUNNER_QUERY_MAX_ROWS="4")

    human = udf_runner(*args, env=env)
    scripted = udf_runner(*args, "--json", env=env)

    assert human.returncode == scripted.returncode == 0, human.stderr
    warnings = [line for line in human.stderr.splitlines() if "warning:" in line]
    assert len(warnings) == 1
    assert "input query 'tokens' was truncated to 4 rows" in warnings[0]
    # A script reads the flag in the result's event; stderr keeps only the runner's own log.
    event = json.loads(scripted.stdout)["response"]["event"]
    assert event["trace_inputs"]["queries"]["tokens"]["truncated"] is True
    assert "udf-runner: warning" not in scripted.stderr


def test_outputs_are_saved_before_the_stack_goes(tmp_path: Path, work_root: Path) -> None:
    saved = tmp_path / "out"

    # No running stack: the command starts its own, and it is gone when the command ends.
    done = udf_runner("run-task", str(SAMPLE_PAYLOAD), "--outputs", str(saved),
                      env=environ(work_root))

    assert done.returncode == 0, done.stderr
    response = json.loads(done.stdout.split("response: ", 1)[1].splitlines()[0])
    whales = json.loads((saved / "whales.json").read_text())
    assert len(whales["rows"]) == response["whales"] > 0
    assert f"outputs: 1 object ({(saved / 'whales.json').stat().st_size} bytes) saved in " \
           f"{saved}" in done.stdout


def test_invoke_saves_outputs_as_json_too(tmp_path: Path, work_root: Path,
                                          local_stack: LocalStack) -> None:
    saved = tmp_path / "out"
    event = tmp_path / "event.json"
    event.write_text(json.dumps(json.loads(SAMPLE_PAYLOAD.read_text())["event"]))

    done = udf_runner("invoke", str(REPO / "samples" / "whale-alert"), "--json",
                      "--event", str(event), "--dataset", "erc20_transfers",
                      "--outputs", str(saved), env=environ(work_root, local_stack))

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # stdout stays the result alone
    assert result["status"] == "succeeded"
    assert result["response"]["output"].endswith("/whales.json")
    assert (saved / "whales.json").is_file()
    assert f"saved in {saved}" in done.stderr


def test_saving_outputs_skips_keys_that_would_leave_the_folder(tmp_path: Path,
                                                               local_stack: LocalStack) -> None:
    # Keys S3 takes as they are, which a bundle's credentials for the prefix could write.
    s3 = local_stack.access.client("s3")
    for key in ("fine/a.txt", "../../evil.txt", "dot/./b.txt", "double//c.txt"):
        s3.put_object(Bucket="udf-outputs", Key=f"tests/escape/{key}", Body=key.encode())
    dest = tmp_path / "deep" / "out"

    result = save(local_stack.access, "s3://udf-outputs/tests/escape/", dest)

    assert [path.relative_to(dest).as_posix() for path in result.files] == ["fine/a.txt"]
    assert (dest / "fine" / "a.txt").read_bytes() == b"fine/a.txt"
    assert sorted(result.skipped) == ["../../evil.txt", "dot/./b.txt", "double//c.txt"]
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["a.txt"]


def test_run_task_runs_the_users_own_bundle_for_their_payload(tmp_path: Path, work_root: Path,
                                                              local_stack: LocalStack) -> None:
    bundle = versioned_bundle(tmp_path / "fn", 42)
    sha256 = hashlib.sha256(zip_folder(bundle)).hexdigest()

    done = udf_runner("run-task", str(SAMPLE_PAYLOAD), "--bundle", str(bundle), "--json",
                      env=environ(work_root, local_stack))

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["response"] == {"version": 42}
    assert result["bundle"]["sha256"] == sha256
    assert f"sha256 {sha256}" in done.stderr
    assert "bundle.uri and bundle.sha256 now name it" in done.stderr


def test_run_task_bundle_with_the_payloads_own_token_is_bad_usage(tmp_path: Path,
                                                                  work_root: Path) -> None:
    bundle = versioned_bundle(tmp_path / "fn", 1)

    done = udf_runner("run-task", str(SAMPLE_PAYLOAD), "--bundle", str(bundle), "--keep-token",
                      env=environ(work_root))

    assert done.returncode == 2
    assert "--keep-token" in done.stderr
