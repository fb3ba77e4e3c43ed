"""The task pipeline from payload to result, against the local stack over real HTTP: S3 (moto in
server mode), the credential minter and the Query Service, with real tokens and real bundles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devstack.stack import LocalStack
from runner.platform.query import INPUTS_KEY
from tests.support.tasks import Tasks, pipeline_bundle, response_of, settings_for


def _files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_a_task_runs_from_payload_to_result(tasks: Tasks) -> None:
    result = tasks.run_bundle(pipeline_bundle(), event={"n": 1}, env={"USER_SETTING": "on"})

    response = response_of(result)
    assert response["event"] == {"n": 1}
    env = response["env"]
    assert env["TRACE_TASK_ID"] == result.task_id
    assert env["TRACE_OUTPUT_PREFIX"] == f"s3://udf-outputs/tests/{result.task_id}/"
    assert env["USER_SETTING"] == "on"
    assert result.bundle is not None
    assert not result.bundle.cache_hit
    assert {"credentials", "fetch", "verify", "extract", "init", "invoke", "total"} <= \
        result.timings_ms.keys()


def test_nothing_of_an_attempt_is_left_in_the_work_root(tasks: Tasks, work_root: Path) -> None:
    tasks.run_bundle(pipeline_bundle())
    tasks.run_bundle(pipeline_bundle(), handler="exit3")

    assert _files_under(work_root / "attempts") == []
    assert _files_under(work_root / "downloads") == []
    assert [p.suffix for p in _files_under(work_root / "cache")] == [".zip"]


def test_a_cache_hit_skips_the_download_but_rehashes(tasks: Tasks, local_stack: LocalStack) -> None:
    uri, sha256 = tasks.upload(pipeline_bundle(), key="cached")
    assert tasks.run(tasks.payload(uri, sha256)).status == "succeeded"
    local_stack.access.client("s3").delete_object(Bucket="udf-bundles", Key="tests/cached.zip")

    again = tasks.run(tasks.payload(uri, sha256))

    assert again.status == "succeeded", again.error
    assert again.bundle is not None
    assert again.bundle.cache_hit
    assert "fetch" not in again.timings_ms
    assert "verify" in again.timings_ms


def test_a_poisoned_cached_zip_is_discarded_and_fetched_again(tasks: Tasks,
                                                                work_root: Path) -> None:
    uri, sha256 = tasks.upload(pipeline_bundle())
    tasks.run(tasks.payload(uri, sha256))
    cached = work_root / "cache" / f"{sha256}.zip"
    cached.write_bytes(cached.read_bytes().replace(b"echo", b"ohce"))

    again = tasks.run(tasks.payload(uri, sha256))

    assert again.status == "succeeded", again.error
    assert again.bundle is not None
    assert not again.bundle.cache_hit
    assert cached.read_bytes() == pipeline_bundle()


def test_one_flipped_byte_is_never_extracted(tasks: Tasks, work_root: Path) -> None:
    genuine = pipeline_bundle()
    flipped = bytearray(genuine)
    flipped[len(flipped) // 2] ^= 0x01
    uri, sha256 = tasks.upload(genuine, key="flipped")
    tasks.stack.access.upload_bundle(bytes(flipped), uri)

    result = tasks.run(tasks.payload(uri, sha256))

    assert result.error is not None
    assert result.error.type == "Bundle.IntegrityMismatch"
    assert not (work_root / "attempts").exists() or not any((work_root / "attempts").iterdir())
    assert _files_under(work_root / "downloads") == []
    assert _files_under(work_root / "cache") == []


def test_input_queries_reach_the_event(tasks: Tasks) -> None:
    result = tasks.run_bundle(pipeline_bundle(), event={"mine": True}, inputs={
        "datasets": ["erc20_tokens"],
        "queries": {"tokens": "select symbol, decimals from erc20_tokens order by symbol"},
    })

    event = response_of(result)["event"]
    assert event["mine"] is True
    tokens = event[INPUTS_KEY]["queries"]["tokens"]
    assert [c["name"] for c in tokens["columns"]] == ["symbol", "decimals"]
    assert ["DAI", 18] in tokens["rows"]
    assert tokens["truncated"] is False
    assert "queries" in result.timings_ms


def test_the_token_is_never_printed(tasks: Tasks, capsys: pytest.CaptureFixture[str]) -> None:
    uri, sha256 = tasks.upload(pipeline_bundle())
    payload = tasks.payload(uri, sha256)
    token = payload["capability_token"]
    good = tasks.run(payload)
    broken = tasks.run(payload | {"attempt": "one"})

    printed = capsys.readouterr()
    assert token not in printed.out + printed.err
    assert token not in good.model_dump_json() + broken.model_dump_json()
    assert broken.error is not None
    assert "attempt" in broken.error.message


def test_runner_role_credentials_never_reach_the_bundle(
        local_stack: LocalStack, work_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What Lambda puts in the runner's environment: its role's credentials.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIARUNNERROLECANARY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "runner-role-secret-canary")
    tasks = Tasks(local_stack, settings_for(local_stack, work_root))

    result = tasks.run_bundle(pipeline_bundle())

    response = response_of(result)
    assert response["env"]["AWS_ACCESS_KEY_ID"].startswith("ASIA")  # minted for the task
    assert "CANARY" not in json.dumps(response).upper()
    assert all("canary" not in line.lower() for line in tasks.lines)
