"""`udf-runner serve`: boto3's own Lambda client invokes the handler through the Invoke API.

Real HTTP on loopback, real execution environments (spawned Python processes running
`runner.app.lambda_handler`), real bundles on the local stack; only AWS itself is local.
"""

from __future__ import annotations

import base64
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from devstack.bundles import zip_files
from devstack.local_run import LocalRunner
from devstack.serve import FunctionConfig, InvokeApi, invoke_api
from devstack.stack import LocalStack
from runner.containment.removal import remove_tree
from tests.support.tasks import pipeline_bundle

#: boto3's Lambda client (the project installs no type stubs for it).
LambdaClient = Any

# Two invocations that can only finish together: the writer's open of the FIFO blocks until the
# reader opens it, and the other way round. Run one after the other, both would time out. With
# READY, the reader first says (through that FIFO) that it is running.
RENDEZVOUS = """#!/bin/bash
set -euo pipefail
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
curl -sS -D "$TMPDIR/h" -o /dev/null "$API/invocation/next"
id=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$TMPDIR/h" | tr -d '[:space:]' | cut -d: -f2)
if [ -n "${READY:-}" ]; then echo running > "$READY"; fi
if [ "$_HANDLER" = writer ]; then echo "from $$" > "$FIFO"; got=sent; else read -r got < "$FIFO"; fi
printf '{"role": "%s", "got": "%s", "root": "%s"}' "$_HANDLER" "$got" "$LAMBDA_TASK_ROOT" \\
  | curl -sS -o /dev/null "$API/invocation/$id/response" --data-binary @-
curl -sS -o /dev/null "$API/invocation/next" || true
"""

PRINTER = """#!/bin/bash
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
curl -sS -D "$TMPDIR/h" -o /dev/null "$API/invocation/next"
id=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$TMPDIR/h" | tr -d '[:space:]' | cut -d: -f2)
echo "printed by the bundle"
curl -sS -o /dev/null "$API/invocation/$id/response" -d '"done"'
curl -sS -o /dev/null "$API/invocation/next"
"""


@pytest.fixture(scope="module")
def api(local_stack: LocalStack) -> Iterator[InvokeApi]:
    with invoke_api(LocalRunner(local_stack.access), FunctionConfig(max_environments=3),
                    log=io.StringIO()) as served:
        yield served


def lambda_client(url: str) -> LambdaClient:
    return boto3.client("lambda", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local",
                        config=Config(read_timeout=120, retries={"max_attempts": 0}))


@pytest.fixture(scope="module")
def client(api: InvokeApi) -> LambdaClient:
    return lambda_client(api.url)


@pytest.fixture(scope="module")
def rendezvous_bundle(local_stack: LocalStack) -> tuple[str, str]:
    uri = "s3://udf-bundles/tests/serve-rendezvous.zip"
    return uri, local_stack.access.upload_bundle(
        zip_files({"bootstrap": (RENDEZVOUS.encode(), 0o755)}), uri)


@pytest.fixture
def fifos() -> Iterator[Callable[[str], Path]]:
    """Makes FIFOs the bundles' sandbox uids can open (when the tests run as root)."""
    folder = Path(tempfile.mkdtemp(prefix="udf-serve-fifo-"))
    folder.chmod(0o711)

    def make(name: str) -> Path:
        path = folder / name
        os.mkfifo(path)
        path.chmod(0o666)
        return path

    try:
        yield make
    finally:
        remove_tree(folder)


@pytest.fixture(scope="module")
def echo_bundle(local_stack: LocalStack) -> tuple[str, str]:
    uri = "s3://udf-bundles/tests/serve-echo.zip"
    return uri, local_stack.access.upload_bundle(pipeline_bundle(), uri)


def task(bundle: tuple[str, str], handler: str = "echo", **overrides: Any) -> dict[str, Any]:
    uri, sha256 = bundle
    return {"schema_version": 1, "task_id": overrides.pop("task_id", "serve-1"), "attempt": 1,
            "capability_token": "replaced-by-the-local-issuer",
            "bundle": {"uri": uri, "sha256": sha256, "runtime": "provided", "handler": handler},
            "event": {"hello": "serve"}, "timeout_ms": 20_000} | overrides


def invoke(client: LambdaClient, payload: Any, **kwargs: Any) -> tuple[dict[str, Any], Any]:
    response = client.invoke(FunctionName="udf-runner", Payload=json.dumps(payload).encode(),
                             **kwargs)
    return dict(response), json.loads(response["Payload"].read())


def test_a_task_runs_and_its_result_comes_back(client: LambdaClient,
                                               echo_bundle: tuple[str, str]) -> None:
    response, result = invoke(client, task(echo_bundle), TenantId="acme")
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert response["ExecutedVersion"] == "$LATEST"
    assert result["status"] == "succeeded", result
    assert result["response"]["event"] == {"hello": "serve"}
    assert result["task_id"] == "serve-1"


def test_two_concurrent_invocations_run_in_environments_of_their_own(
        client: LambdaClient, rendezvous_bundle: tuple[str, str],
        fifos: Callable[[str], Path]) -> None:
    fifo = fifos("meet")
    payloads = [task(rendezvous_bundle, role, task_id=f"meet-{role}", env={"FIFO": str(fifo)})
                for role in ("writer", "reader")]
    with ThreadPoolExecutor(2) as pool:
        results = [result for _, result in pool.map(lambda p: invoke(client, p), payloads)]
    assert [r["status"] for r in results] == ["succeeded", "succeeded"], results
    writer, reader = (r["response"] for r in results)
    assert reader["got"].startswith("from ")
    assert Path(writer["root"]).parents[2] != Path(reader["root"]).parents[2]  # env-N work roots


def test_the_log_tail_comes_back_when_asked_for(client: LambdaClient,
                                              local_stack: LocalStack) -> None:
    uri = "s3://udf-bundles/tests/serve-printer.zip"
    bundle = uri, local_stack.access.upload_bundle(
        zip_files({"bootstrap": (PRINTER.encode(), 0o755)}), uri)
    response, result = invoke(client, task(bundle, task_id="serve-tail"), LogType="Tail")
    assert result["status"] == "succeeded"
    tail = base64.b64decode(response["LogResult"]).decode()
    # The line as the runner forwards it to the function's log, with its task and stream.
    assert "[udf serve-tail/1 stdout] printed by the bundle" in tail


def test_an_invalid_tenant_id_is_lambdas_400(client: LambdaClient) -> None:
    with pytest.raises(ClientError) as raised:
        invoke(client, {}, TenantId="no\ttabs")
    assert raised.value.response["Error"]["Code"] == "InvalidParameterValueException"


def test_an_invocation_beyond_the_concurrency_limit_is_throttled(
        local_stack: LocalStack, rendezvous_bundle: tuple[str, str],
        fifos: Callable[[str], Path]) -> None:
    fifo, ready = fifos("hold"), fifos("ready")
    env = {"FIFO": str(fifo), "READY": str(ready)}
    with invoke_api(LocalRunner(local_stack.access), FunctionConfig(max_environments=1),
                    log=io.StringIO()) as served, ThreadPoolExecutor(1) as pool:
        client = lambda_client(served.url)
        # The reader holds the only environment until the test writes to the FIFO.
        reading = pool.submit(invoke, client, task(rendezvous_bundle, "reader", env=env))
        assert ready.read_text() == "running\n"
        with pytest.raises(client.exceptions.TooManyRequestsException) as raised:
            invoke(client, {})
        fifo.write_text("from the test\n")
        _, result = reading.result()
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert result["response"]["got"] == "from the test"


def test_an_invalid_payload_is_a_failed_result_not_a_function_error(
        client: LambdaClient) -> None:
    response, result = invoke(client, {"schema_version": 1, "task_id": "broken"})
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert result["status"] == "failed"
    assert result["error"]["type"] == "Task.InvalidPayload"
    assert result["error"]["retryable"] is False
    assert result["task_id"] == "broken"


def test_a_tenant_never_gets_another_tenants_environment(client: LambdaClient,
                                                         echo_bundle: tuple[str, str]) -> None:
    roots = {tenant: Path(invoke(client, task(echo_bundle), TenantId=tenant)[1]
                          ["response"]["env"]["cwd"]).parents[2]
             for tenant in ("tenant-a", "tenant-b")}
    again = Path(invoke(client, task(echo_bundle), TenantId="tenant-a")[1]
                 ["response"]["env"]["cwd"]).parents[2]
    assert roots["tenant-a"] != roots["tenant-b"]
    assert again == roots["tenant-a"]  # warm: the same environment, reused


@pytest.mark.parametrize("name", ["nope", "arn:aws:lambda:us-east-1:000000000000:function:nope",
                                  "udf-runner:v9"])
def test_an_unknown_function_is_lambdas_404(client: LambdaClient, name: str) -> None:
    with pytest.raises(client.exceptions.ResourceNotFoundException) as raised:
        client.invoke(FunctionName=name, Payload=b"{}")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert "Function not found: arn:aws:lambda:us-east-1:000000000000:function:" in str(
        raised.value)


@pytest.mark.parametrize("name", ["RunnerFunction", "udf-runner:live",
                                  "arn:aws:lambda:us-east-1:000000000000:function:udf-runner"])
def test_the_function_answers_to_its_names_and_arns(client: LambdaClient, name: str) -> None:
    response = client.invoke(FunctionName=name, InvocationType="DryRun")
    assert response["StatusCode"] == 204


def test_a_body_that_is_not_json_is_lambdas_400(client: LambdaClient) -> None:
    with pytest.raises(ClientError) as raised:
        client.invoke(FunctionName="udf-runner", Payload=b"{not json")
    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Error"]["Code"] == "InvalidRequestContentException"
    assert "Could not parse request body into json" in error["Error"]["Message"]


def test_a_function_that_cannot_start_is_an_unhandled_function_error(
        local_stack: LocalStack) -> None:
    broken = {"UDF_RUNNER_FUNCTION_MEMORY_MB": "1"}  # refused by the runner's settings
    with invoke_api(LocalRunner(local_stack.access), FunctionConfig(), environ=broken,
                    log=io.StringIO()) as served:
        client = boto3.client("lambda", endpoint_url=served.url, region_name="us-east-1",
                              aws_access_key_id="local", aws_secret_access_key="local")
        response, body = invoke(client, {})
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "SettingsError"
    assert "UDF_RUNNER_FUNCTION_MEMORY_MB" in body["errorMessage"]
