"""A cold task needs no AWS SDK: the deployed function ships neither boto3 nor botocore, and a
cache-miss task (mint, fetch from S3, verify, extract, invoke, outputs' credentials) runs in a
fresh process where importing them fails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.tasks import Tasks, pipeline_bundle

#: Runs one task through a new pipeline with boto3 and botocore made unimportable; prints the
#: result and every import of them that was tried.
PROBE = r"""
import importlib.abc, json, sys

tried = []

class NoAwsSdk(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("boto3", "botocore"):
            tried.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoAwsSdk())
from runner.pipeline import Pipeline
from runner.settings import Settings

pipeline = Pipeline(Settings.model_validate_json(sys.argv[1]), sink=lambda line: None)
result = pipeline.run(json.loads(sys.argv[2]))
loaded = [m for m in sys.modules if m.partition(".")[0] in ("boto3", "botocore")]
print(json.dumps({"result": result.model_dump(mode="json"), "tried": tried, "loaded": loaded}))
"""


def test_a_cold_cache_miss_task_runs_without_botocore(tasks: Tasks, tmp_path: Path) -> None:
    uri, sha256 = tasks.upload(pipeline_bundle())
    payload = tasks.payload(uri, sha256)

    done = subprocess.run(
        [sys.executable, "-c", PROBE, tasks.settings.model_dump_json(), json.dumps(payload)],
        capture_output=True, text=True, timeout=120, check=True, cwd=tmp_path)
    report = json.loads(done.stdout.splitlines()[-1])

    result = report["result"]
    assert result["status"] == "succeeded", result["error"]
    assert result["bundle"]["cache_hit"] is False
    assert "fetch" in result["timings_ms"]
    assert report["loaded"] == []
    # Powertools looks for botocore (to tag its user agent) and does without it; nothing else may.
    assert set(report["tried"]) <= {"botocore"}, report["tried"]
