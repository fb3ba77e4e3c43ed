"""The GitHub Actions pipeline deploys dev, then prod, with samconfig.toml's environments and
short-lived OIDC credentials only."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_PATH = ROOT / ".github" / "workflows" / "pipeline.yaml"
WORKFLOW: Mapping[str, Any] = yaml.safe_load(WORKFLOW_PATH.read_text())
JOBS: Mapping[str, Any] = WORKFLOW["jobs"]


def runs(job: str) -> str:
    return "\n".join(step.get("run", "") for step in JOBS[job]["steps"])


def uses(job: str) -> list[str]:
    return [step["uses"] for step in JOBS[job]["steps"] if "uses" in step]


def test_stages_run_in_order_dev_then_prod() -> None:
    assert JOBS["build-and-package"]["needs"] == ["test"]
    assert JOBS["deploy-dev"]["needs"] == ["build-and-package"]
    assert JOBS["integration-test"]["needs"] == ["deploy-dev"]
    assert JOBS["deploy-prod"]["needs"] == ["integration-test"]
    assert JOBS["deploy-prod"]["environment"] == "prod"


def test_ci_runs_the_make_test_entry_point() -> None:
    assert "./.ci/run" in runs("test")


def test_build_checks_the_size_without_a_container() -> None:
    build = runs("build-and-package")
    assert "make sam-build" in build
    assert "--use-container" not in build


def test_each_stage_uses_its_samconfig_environment() -> None:
    with (ROOT / "samconfig.toml").open("rb") as f:
        samconfig = tomllib.load(f)
    env = WORKFLOW["env"]
    for stage in ("dev", "prod"):
        prefix = stage.upper()
        assert env[f"{prefix}_CONFIG_ENV"] == stage
        assert env[f"{prefix}_STACK_NAME"] == samconfig[stage]["global"]["parameters"]["stack_name"]
        assert f"--config-env ${{{prefix}_CONFIG_ENV}}" in runs(f"deploy-{stage}")
        assert f"--role-arn ${{{prefix}_CLOUDFORMATION_EXECUTION_ROLE}}" in runs(f"deploy-{stage}")
        assert f"--config-env ${{{prefix}_CONFIG_ENV}}" in runs("build-and-package")


def test_aws_credentials_come_only_from_oidc_role_assumption() -> None:
    assert WORKFLOW["permissions"] == {"id-token": "write", "contents": "read"}
    text = WORKFLOW_PATH.read_text()
    assert not re.search(r"secrets\.|aws-access-key-id|aws-secret-access-key", text)
    for job in JOBS:
        for step in JOBS[job]["steps"]:
            if step.get("uses", "").startswith("aws-actions/configure-aws-credentials"):
                assert "role-to-assume" in step["with"]


def test_deployments_use_the_packaged_artifact_of_their_stage() -> None:
    assert "--template packaged-dev.yaml" in runs("deploy-dev")
    assert "--template packaged-prod.yaml" in runs("deploy-prod")
    assert "sam build" not in runs("deploy-dev") + runs("deploy-prod")
