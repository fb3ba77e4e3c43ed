"""`sam local invoke`, for real minus the container.

`sam local invoke` runs the built function in Lambda's python3.13 image: AWS's Runtime Interface
Emulator starts `python -m awslambdaric <Handler>` with the template's environment (the
variables `--env-vars` names overridden) and posts the event to its invoke endpoint. Here the
same RIE (built from the Go module proxy) runs `sam build`'s artifact on the host the same way,
one RIE per invocation as one container per `sam local invoke`, against the local stack. The
only substitutions are the container's paths: the layer at /opt and the work root under /tmp.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

from devstack import samples
from devstack.demo import EXPECTED
from devstack.local_run import grant_for
from devstack.samples import EVENTS
from devstack.stack import LocalStack
from runner.containment.removal import remove_tree
from tests.e2e.conftest import FUNCTION, LAYER, PYTHON, ROLE
from tests.support import rie, toolchains

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
FUNCTION_NAME = "RunnerFunction"


def _resolve(value: Any, template: Mapping[str, Any]) -> Any:
    """A property's value with the intrinsics the function's properties use resolved, from
    the parameters' defaults (as `sam local` does when no override is given)."""
    if not isinstance(value, dict):
        return value
    parameters = {name: spec.get("Default") for name, spec in template["Parameters"].items()}
    if "Ref" in value:
        return parameters[value["Ref"]]
    if "Fn::Sub" in value:
        return re.sub(r"\$\{(\w+)\}", lambda m: str(parameters[m[1]]), value["Fn::Sub"])
    if "Fn::FindInMap" in value:
        table, key, field = (str(_resolve(part, template)) for part in value["Fn::FindInMap"])
        return template["Mappings"][table][key][field]
    raise ValueError(f"unresolved intrinsic {value}")


def _function() -> tuple[dict[str, str], dict[str, Any]]:
    """The function's environment variables and properties, as the template declares them."""
    template, errors = decode(str(TEMPLATE))
    assert template is not None, errors
    properties = template["Resources"][FUNCTION_NAME]["Properties"]
    variables = properties["Environment"]["Variables"]
    return ({name: str(_resolve(v, template)) for name, v in variables.items()},
            {name: _resolve(properties[name], template)
             for name in ("Handler", "MemorySize", "Timeout")})


@pytest.fixture(scope="module")
def work_root() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="udf-runner-sam-local-"))
    base.chmod(0o711)
    try:
        root = base / "work"
        root.mkdir(mode=0o755)
        yield root
    finally:
        remove_tree(base)


@pytest.fixture(scope="module")
def environment(local_stack: LocalStack, runtime_client: Path, work_root: Path
                ) -> dict[str, str]:
    """What the RIE in Lambda's python3.13 image gives the runtime for this template."""
    declared, properties = _function()
    # --env-vars: only the variables the template declares are overridden (env.local.json).
    overrides = local_stack.access.runner_environ()
    assert overrides.keys() <= declared.keys()
    return {
        **declared, **overrides,
        # The container's paths: the layer is mounted at /opt, the work root is in /tmp.
        "UDF_RUNNER_NODE_LAYER": str(LAYER), "UDF_RUNNER_WORK_ROOT": str(work_root),
        # The image's own environment (the RIE forwards all of it to the runtime).
        "PATH": f"{PYTHON.parent}:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
        "PYTHONPATH": f"{runtime_client}:{FUNCTION}", "LAMBDA_TASK_ROOT": str(FUNCTION),
        "LANG": "en_US.UTF-8", "TZ": ":UTC",
        "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(properties["MemorySize"]),
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", **ROLE,
    }


@pytest.fixture(scope="module", autouse=True)
def _samples_uploaded(local_stack: LocalStack) -> None:
    if not (FUNCTION / "runner" / "app.py").is_file():
        pytest.fail("no built function: run `make sam-build` first", pytrace=False)
    for sample in samples.ALL:
        local_stack.access.upload_bundle(samples.build(sample), sample.uri)


def _sam_local_invoke(payload: Any, environment: Mapping[str, str],
                      stack: LocalStack) -> dict[str, Any]:
    """One `sam local invoke -e payload` (its token from `udf-runner token`): the result."""
    if isinstance(payload, dict):
        # A payload too broken to grant anything keeps its token: the function says why.
        with contextlib.suppress(ValueError):
            payload = payload | {"capability_token": stack.issue_token(grant_for(payload))}
    _, properties = _function()
    command = [str(PYTHON), "-s", "-m", "awslambdaric", properties["Handler"]]
    with rie.running(command, FUNCTION, environment,
                     timeout_s=int(properties["Timeout"])) as emulator:
        answer = emulator.invoke(json.dumps(payload).encode(), timeout_s=300)
    assert answer.status == 200, answer.body[:2000]
    result = json.loads(answer.body)
    assert isinstance(result, dict)
    return result


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_event_gives_its_expected_result(name: str, environment: dict[str, str],
                                              local_stack: LocalStack) -> None:
    payload = json.loads((EVENTS / name).read_text())

    result = _sam_local_invoke(payload, environment, local_stack)

    expected = EXPECTED[name]
    assert result["task_id"] == payload["task_id"]
    assert result["status"] == ("succeeded" if expected is None else "failed"), result["error"]
    assert (result["error"] or {}).get("type") == expected


@pytest.mark.parametrize("toolchain", ["rust", "go"])
def test_official_client_bundles_run_under_the_built_function(
        toolchain: str, environment: dict[str, str], local_stack: LocalStack) -> None:
    bundle = (toolchains.rust_bundles().abort if toolchain == "rust"
              else toolchains.go_bundles()["echo"]).zip.read_bytes()
    uri = f"s3://udf-bundles/sam-local/{hashlib.sha256(bundle).hexdigest()}.zip"
    payload = {
        "schema_version": 1, "task_id": f"sam-local-{toolchain}", "attempt": 1,
        "capability_token": "replaced-by-a-real-token",
        "bundle": {"uri": uri, "sha256": local_stack.access.upload_bundle(bundle, uri),
                   "runtime": "provided", "handler": "echo"},
        "event": {"k": 1}, "timeout_ms": 10_000,
        "outputs": {"s3_prefix": f"s3://udf-outputs/sam-local/sam-local-{toolchain}/"},
    }

    result = _sam_local_invoke(payload, environment, local_stack)

    assert result["status"] == "succeeded", result["error"]
    assert result["response"]["event"] == {"k": 1}
    assert result["response"]["received"]["env"]["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
