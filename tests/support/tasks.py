"""Tasks run through the real pipeline against the local stack (devstack), for the tests.

`Tasks` puts a bundle in the stack's S3, issues the task a real token from the stack's issuer
and runs the payload through `runner.pipeline.Pipeline`, the code under the Lambda handler.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.bundles import zip_folder
from devstack.claims import Grant
from devstack.local_run import LOCAL_NODE_LAYER
from devstack.stack import LocalStack
from runner.models import TaskResult
from runner.pipeline import Pipeline
from runner.settings import Settings
from tests.conftest import sandbox_ids

FIXTURES = Path(__file__).parents[1] / "fixtures"
#: The multi-behaviour bash bootstrap (its _HANDLER picks what it does).
PIPELINE_BOOTSTRAP = FIXTURES / "bash" / "pipeline"


def pipeline_bundle() -> bytes:
    """The zip of the multi-behaviour bootstrap."""
    return zip_folder(PIPELINE_BOOTSTRAP)


@dataclass
class Tasks:
    """Runs tasks on one stack with one pipeline (one execution environment)."""

    stack: LocalStack
    settings: Settings
    lines: list[str] = field(default_factory=list)  # what the children printed
    pipeline: Pipeline = field(init=False)

    def __post_init__(self) -> None:
        self.pipeline = Pipeline(self.settings, sink=self.lines.append)

    def upload(self, bundle: bytes, key: str | None = None) -> tuple[str, str]:
        """Put `bundle` in the stack's bundle bucket; (URI, its SHA-256)."""
        uri = f"s3://udf-bundles/tests/{key or hashlib.sha256(bundle).hexdigest()}.zip"
        return uri, self.stack.access.upload_bundle(bundle, uri)

    def payload(self, uri: str, sha256: str, *, runtime: str = "provided",
                handler: str | None = "echo", **overrides: Any) -> dict[str, Any]:
        """A task payload for the bundle at `uri`, with a token the issuer signed for it."""
        task_id = overrides.pop("task_id", f"t-{uuid.uuid4().hex[:10]}")
        payload: dict[str, Any] = {
            "schema_version": 1, "task_id": task_id, "attempt": 1,
            "bundle": {"uri": uri, "sha256": sha256, "runtime": runtime,
                       **({"handler": handler} if handler else {})},
            "event": {"hello": "world"}, "timeout_ms": 10_000,
            "outputs": {"s3_prefix": f"s3://udf-outputs/tests/{task_id}/"},
        } | overrides
        if "capability_token" not in payload:
            payload["capability_token"] = self.token_for(payload)
        return payload

    def token_for(self, payload: dict[str, Any], *, issued_at: int | None = None,
                  **grant: Any) -> str:
        """A real token for `payload` (grant fields may be overridden), issued now or at
        `issued_at` (Unix seconds: a token issued long ago has expired)."""
        outputs = payload.get("outputs") or {}
        fields: dict[str, Any] = {
            "task_id": payload["task_id"], "attempt": payload["attempt"],
            "bundle_uri": payload["bundle"]["uri"], "bundle_sha256": payload["bundle"]["sha256"],
            "datasets": (payload.get("inputs") or {}).get("datasets", []),
            "output_prefix": outputs.get("s3_prefix"),
        } | grant
        issuer = self.stack.issuer
        return issuer.sign(issuer.claims(Grant.for_task(**fields), now=issued_at))

    def run(self, payload: Any) -> TaskResult:
        """The pipeline's result for `payload`."""
        return self.pipeline.run(payload)

    def run_bundle(self, bundle: bytes, **payload: Any) -> TaskResult:
        """Upload `bundle` and run a task of it."""
        uri, sha256 = self.upload(bundle)
        return self.run(self.payload(uri, sha256, **payload))


def response_of(result: TaskResult) -> Any:
    """The function's response of a successful result (typed loosely, for assertions)."""
    assert result.status == "succeeded", (result.error, result.logs.tail)
    return result.response


def settings_for(stack: LocalStack, work_root: Path, **overrides: str) -> Settings:
    """Settings pointing the runner at `stack`, working under `work_root`."""
    return Settings.from_env({
        **stack.access.runner_environ(),
        "UDF_RUNNER_WORK_ROOT": str(work_root),
        "UDF_RUNNER_NODE_LAYER": str(LOCAL_NODE_LAYER),
        **sandbox_ids(),
        **{f"UDF_RUNNER_{name.upper()}": value for name, value in overrides.items()},
    })
