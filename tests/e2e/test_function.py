"""The deployed code as Lambda runs it: `sam build`'s artifact under the official Python runtime
interface client, one warm execution environment, every sample payload of events/ against the
local stack, with role credentials in its environment that no bundle may see."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from devstack import samples
from devstack.bundles import zip_folder
from devstack.demo import EXPECTED
from devstack.samples import EVENTS
from tests.e2e.conftest import FUNCTION, ROLE, Function
from tests.support.tasks import PIPELINE_BOOTSTRAP


@pytest.fixture(scope="module", autouse=True)
def _samples_uploaded(function: Function) -> None:
    for sample in samples.ALL:
        function.stack.access.upload_bundle(samples.build(sample), sample.uri)


def test_every_sample_event_is_covered() -> None:
    assert sorted(EXPECTED) == sorted(p.name for p in EVENTS.glob("*.json"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_event_gives_its_result(function: Function, name: str) -> None:
    payload = json.loads((EVENTS / name).read_text())

    result = function.invoke(payload)

    expected = EXPECTED[name]
    assert result["schema_version"] == 1
    assert result["task_id"] == payload["task_id"]
    assert result["status"] == ("succeeded" if expected is None else "failed"), result["error"]
    assert (result["error"] or {}).get("type") == expected
    assert "total" in result["timings_ms"]


def test_the_sample_results_hold_what_the_bundles_computed(function: Function) -> None:
    whales = function.invoke(json.loads((EVENTS / "provided-success.json").read_text()))
    decoded = function.invoke(json.loads((EVENTS / "nodejs-success.json").read_text()))

    assert whales["response"]["whales"] > 0
    output = whales["response"]["output"].removeprefix("s3://udf-outputs/")
    written = function.stack.access.client("s3").get_object(Bucket="udf-outputs", Key=output)
    assert written["Body"].read().startswith(b'{"columns"')
    assert decoded["response"]["count"] == 20
    first = decoded["response"]["transfers"][0]
    assert first["from"].startswith("0x")
    assert first["amount"]


def test_a_warm_environment_reuses_the_verified_bundle(function: Function) -> None:
    payload = json.loads((EVENTS / "nodejs-success.json").read_text())

    function.invoke(payload)
    again = function.invoke(payload)

    assert again["bundle"]["cache_hit"] is True


def test_a_payload_that_is_not_an_object_is_a_result_not_a_crash(function: Function) -> None:
    result = function.invoke("not a task", reissue_token=False)

    assert result["status"] == "failed"
    assert result["error"]["type"] == "Task.InvalidPayload"


def test_the_role_credentials_reach_neither_the_bundle_nor_the_logs(function: Function) -> None:
    bundle = zip_folder(PIPELINE_BOOTSTRAP)
    uri = f"s3://udf-bundles/e2e/{hashlib.sha256(bundle).hexdigest()}.zip"
    sha256 = function.stack.access.upload_bundle(bundle, uri)
    payload = {
        "schema_version": 1, "task_id": "e2e-role", "attempt": 1,
        "capability_token": "replaced-by-a-real-token",
        "bundle": {"uri": uri, "sha256": sha256, "runtime": "provided", "handler": "echo"},
        "event": {}, "timeout_ms": 10_000,
        "outputs": {"s3_prefix": "s3://udf-outputs/e2e/e2e-role/"},
    }

    result = function.invoke(payload)

    assert result["status"] == "succeeded", result["error"]
    minted = result["response"]["env"]["AWS_ACCESS_KEY_ID"]
    assert minted.startswith("ASIA")
    assert minted != ROLE["AWS_ACCESS_KEY_ID"]
    everything = json.dumps(result) + "".join(function.output)
    for secret in ROLE.values():
        assert secret not in everything


def test_the_cold_start_records_its_containment_controls(function: Function) -> None:
    records = function.records(until=lambda r: r.get("message") == "containment")
    containment = [r for r in records if r.get("message") == "containment"]
    assert len(containment) == 1
    assert containment[0]["containment"]["missing"] == []


def test_the_built_artifact_is_the_code_under_test() -> None:
    source = Path(__file__).parents[2] / "runner"
    stale = [path.name for path in source.glob("*.py")
             if (FUNCTION / "runner" / path.name).read_bytes() != path.read_bytes()]

    assert stale == [], "the artifact is stale: run `make sam-build`"


def test_logs_are_json_keyed_by_task_attempt_and_bundle(function: Function) -> None:
    payload = json.loads((EVENTS / "provided-handler-error.json").read_text())
    function.invoke(payload)

    def is_finished(record: dict[str, Any]) -> bool:
        return bool(record.get("message") == "task finished"
                    and record.get("task_id") == payload["task_id"])

    finished = [r for r in function.records(until=is_finished) if is_finished(r)]
    assert finished
    assert finished[-1]["attempt"] == 1
    assert finished[-1]["bundle_sha256"] == payload["bundle"]["sha256"]
    assert finished[-1]["error_type"] == "Function.Error"
