"""samconfig.toml and env.local.json fit template.yaml: every environment deploys what it names.

Parameter overrides are parsed by SAM CLI's own parser, then checked against the template's
parameters the way CloudFormation will (names, required ones, allowed values, ranges, patterns).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode
from samcli.cli.types import CfnParameterOverridesType

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENTS = ("default", "dev", "prod")
STAGES = ("dev", "prod")
#: Values an operator must fill in per account (network ids); CloudFormation rejects them as is.
PLACEHOLDER = "REPLACE-ME"


def load_samconfig() -> dict[str, Any]:
    with (ROOT / "samconfig.toml").open("rb") as f:
        return tomllib.load(f)


def load_parameters() -> Mapping[str, Any]:
    document, problems = decode(str(ROOT / "template.yaml"))
    assert not problems, problems
    return document["Parameters"]  # type: ignore[no-any-return]


SAMCONFIG = load_samconfig()
PARAMETERS = load_parameters()


def command(env: str, name: str) -> dict[str, Any]:
    return SAMCONFIG[env][name]["parameters"]  # type: ignore[no-any-return]


def overrides(env: str) -> dict[str, str]:
    raw = command(env, "deploy")["parameter_overrides"]
    return CfnParameterOverridesType().convert(raw, None, None)  # type: ignore[no-any-return]


def test_environments_are_default_dev_and_prod() -> None:
    assert SAMCONFIG["version"] == 0.1
    assert set(SAMCONFIG) - {"version"} == set(ENVIRONMENTS)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_environment_lints_caches_and_deploys_with_iam(env: str) -> None:
    assert command(env, "validate") == {"lint": True}
    assert command(env, "build")["cached"] is True
    assert command(env, "deploy")["capabilities"] == "CAPABILITY_IAM"


def test_each_environment_has_its_own_stack() -> None:
    names = [command(env, "global")["stack_name"] for env in ENVIRONMENTS]
    assert names == ["udf-runner", "udf-runner-dev", "udf-runner-prod"]


@pytest.mark.parametrize("env", STAGES)
def test_stage_overrides_name_only_template_parameters_and_all_required_ones(env: str) -> None:
    given = overrides(env)
    assert set(given) <= set(PARAMETERS)
    required = {name for name, p in PARAMETERS.items() if "Default" not in p}
    assert required <= set(given), required - set(given)


@pytest.mark.parametrize("env", STAGES)
def test_stage_overrides_are_values_cloudformation_accepts(env: str) -> None:
    for name, value in overrides(env).items():
        spec = PARAMETERS[name]
        if PLACEHOLDER in value:
            continue
        if "AllowedValues" in spec:
            assert value in [str(v) for v in spec["AllowedValues"]], (name, value)
        if "MinValue" in spec:
            assert int(value) >= spec["MinValue"], (name, value)
        if "MaxValue" in spec:
            assert int(value) <= spec["MaxValue"], (name, value)
        if "AllowedPattern" in spec:
            assert re.fullmatch(spec["AllowedPattern"], value), (name, value)


def test_prod_isolates_tenants_and_keeps_logs_a_year() -> None:
    prod = overrides("prod")
    assert prod["TenantIsolation"] == "PER_TENANT"
    assert int(prod["LogRetentionDays"]) >= 365
    assert prod["LogLevel"] == "INFO"


@pytest.mark.parametrize("env", STAGES)
def test_stages_take_the_pipelines_bucket(env: str) -> None:
    # The pipeline passes --s3-bucket; SAM refuses it together with resolve_s3.
    assert "resolve_s3" not in command(env, "deploy")
    assert "resolve_s3" not in command(env, "package")


def test_prod_asks_a_person_to_confirm_the_change_set() -> None:
    assert command("prod", "deploy")["confirm_changeset"] is True


def test_local_invoke_env_vars_override_variables_the_template_declares() -> None:
    env_file = command("default", "local_invoke")["env_vars"]
    local = json.loads((ROOT / env_file).read_text())
    document, _ = decode(str(ROOT / "template.yaml"))
    declared = document["Resources"]["RunnerFunction"]["Properties"]["Environment"]["Variables"]
    assert set(local) == {"RunnerFunction"}
    # `sam local invoke --env-vars` silently ignores a variable the template does not declare.
    assert set(local["RunnerFunction"]) <= set(declared)
    assert {"UDF_RUNNER_MINTER_URL", "UDF_RUNNER_QUERY_URL",
            "UDF_RUNNER_S3_ENDPOINT_URL"} <= set(local["RunnerFunction"])
