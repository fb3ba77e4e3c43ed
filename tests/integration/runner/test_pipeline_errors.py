"""Every error type of docs/contract.md#error-types, produced through the whole pipeline
against the local stack. Each failing task leaves the pipeline healthy: the next task in it
succeeds."""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.bundles import zip_files
from devstack.stack import LocalStack
from runner.models import TaskResult
from tests.support.scripted_server import Reply, scripted
from tests.support.tasks import Tasks, pipeline_bundle, settings_for


def _error(result: TaskResult) -> tuple[str, bool]:
    assert result.status == "failed"
    assert result.error is not None
    return result.error.type, result.error.retryable


@pytest.fixture
def healthy_after(tasks: Tasks) -> Iterator[Tasks]:
    """The pipeline still runs a good task after the test's failing one."""
    yield tasks
    after = tasks.run_bundle(pipeline_bundle())
    assert after.status == "succeeded", after.error


def _with(local_stack: LocalStack, work_root: Path, **settings: str) -> Tasks:
    return Tasks(local_stack, settings_for(local_stack, work_root, **settings))


# --- the task ---------------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [
    "not an object", [], {}, {"schema_version": 1},
])
def test_a_malformed_payload_is_invalid_payload(healthy_after: Tasks, payload: Any) -> None:
    result = healthy_after.run(payload)

    assert _error(result) == ("Task.InvalidPayload", False)


def test_invalid_payload_names_the_field_and_keeps_task_id(healthy_after: Tasks) -> None:
    uri, sha256 = healthy_after.upload(pipeline_bundle())
    payload = healthy_after.payload(uri, sha256, timeout_ms=-5)

    result = healthy_after.run(payload)

    assert _error(result) == ("Task.InvalidPayload", False)
    assert result.error is not None
    assert "timeout_ms" in result.error.message
    assert (result.task_id, result.attempt) == (payload["task_id"], 1)


def test_a_timeout_over_the_runners_maximum_is_invalid(local_stack: LocalStack,
                                                      work_root: Path) -> None:
    tasks = _with(local_stack, work_root, max_timeout_ms="2000")

    result = tasks.run_bundle(pipeline_bundle(), timeout_ms=5000)

    assert _error(result) == ("Task.InvalidPayload", False)


@pytest.mark.parametrize("grant", [
    {"task_id": "someone-else"},
    {"attempt": 2},
    {"bundle_sha256": "0" * 64},
    {"issued_at": int(time.time()) - 86_400},  # expired
])
def test_a_token_not_for_this_attempt_is_rejected_before_any_call(
        local_stack: LocalStack, work_root: Path, grant: dict[str, Any]) -> None:
    with scripted(Reply(500)) as minter:
        tasks = _with(local_stack, work_root, minter_url=minter.url)
        uri, sha256 = tasks.upload(pipeline_bundle())
        payload = tasks.payload(uri, sha256, capability_token="x" * 20)
        payload["capability_token"] = tasks.token_for(payload, **grant)

        result = tasks.run(payload)

    assert _error(result) == ("Task.TokenRejected", False)
    assert minter.seen == []


# --- the platform -----------------------------------------------------------------------------

def test_an_unreachable_minter_is_credentials_unavailable(local_stack: LocalStack,
                                                         work_root: Path) -> None:
    with scripted(Reply(503, {"error": {"code": "Unavailable", "message": "down"}})) as minter:
        tasks = _with(local_stack, work_root, minter_url=minter.url)
        result = tasks.run_bundle(pipeline_bundle())

    assert _error(result) == ("Platform.CredentialsUnavailable", True)
    assert len(minter.seen) > 1


def test_a_bundle_outside_the_tokens_prefixes_is_access_denied(healthy_after: Tasks) -> None:
    uri, sha256 = healthy_after.upload(pipeline_bundle())
    payload = healthy_after.payload(uri, sha256)
    payload["capability_token"] = healthy_after.token_for(
        payload, bundle_uri="s3://udf-bundles/somewhere-else/")

    assert _error(healthy_after.run(payload)) == ("Platform.AccessDenied", False)


def test_a_failing_input_query_is_query_failed(healthy_after: Tasks) -> None:
    result = healthy_after.run_bundle(pipeline_bundle(), inputs={
        "datasets": ["erc20_tokens"], "queries": {"broken": "select nothing from nowhere"}})

    assert _error(result) == ("Platform.QueryFailed", False)
    assert result.error is not None
    assert "broken" in result.error.message


def test_a_query_outside_the_tokens_datasets_is_query_failed(healthy_after: Tasks) -> None:
    result = healthy_after.run_bundle(pipeline_bundle(), inputs={
        "datasets": ["erc20_tokens"], "queries": {"blocks": "select count(*) from blocks"}})

    assert _error(result) == ("Platform.QueryFailed", False)


def test_an_unreachable_s3_is_storage_unavailable(local_stack: LocalStack,
                                                 work_root: Path) -> None:
    with scripted(Reply(503, b"<Error><Code>SlowDown</Code></Error>")) as s3:
        tasks = _with(local_stack, work_root, s3_endpoint_url=s3.url, s3_max_attempts="1")
        result = tasks.run_bundle(pipeline_bundle())

    assert _error(result) == ("Platform.StorageUnavailable", True)


# --- the bundle -------------------------------------------------------------------------------

def test_no_object_at_the_uri_is_bundle_not_found(healthy_after: Tasks) -> None:
    payload = healthy_after.payload("s3://udf-bundles/tests/never-uploaded.zip", "ab" * 32)

    assert _error(healthy_after.run(payload)) == ("Bundle.NotFound", False)


def test_a_different_hash_is_integrity_mismatch(healthy_after: Tasks) -> None:
    uri, _ = healthy_after.upload(pipeline_bundle())

    result = healthy_after.run(healthy_after.payload(uri, "cd" * 32))

    assert _error(result) == ("Bundle.IntegrityMismatch", False)


@pytest.mark.parametrize(("setting", "value"), [
    ("max_bundle_bytes", "1000"),  # compressed
    ("max_unzipped_bytes", "1000"),  # uncompressed
])
def test_a_bundle_over_a_size_limit_is_too_large(local_stack: LocalStack, work_root: Path,
                                                 setting: str, value: str) -> None:
    tasks = _with(local_stack, work_root, **{setting: value})
    big = zip_files({"bootstrap": (b"#!/bin/sh\n" + b"#" * 5000, 0o755)})

    assert _error(tasks.run_bundle(big)) == ("Bundle.TooLarge", False)


@pytest.mark.parametrize("bundle", [
    b"this is not a zip file at all",
    zip_files({"../escape": (b"x", 0o644), "bootstrap": (b"#!/bin/sh\n", 0o755)}),
])
def test_an_unsafe_or_broken_zip_is_invalid(healthy_after: Tasks, bundle: bytes) -> None:
    assert _error(healthy_after.run_bundle(bundle)) == ("Bundle.Invalid", False)


def test_no_bootstrap_is_missing_entrypoint(healthy_after: Tasks) -> None:
    bundle = zip_files({"main": (b"#!/bin/sh\n", 0o755)})

    assert _error(healthy_after.run_bundle(bundle)) == ("Bundle.MissingEntrypoint", False)


def test_no_file_for_the_node_handler_is_missing_entrypoint(healthy_after: Tasks) -> None:
    bundle = zip_files({"index.mjs": (b"export const handler = async () => 1;\n", 0o644)})

    result = healthy_after.run_bundle(bundle, runtime="nodejs", handler="app.handler")

    assert _error(result) == ("Bundle.MissingEntrypoint", False)


def test_an_arm64_bootstrap_is_unsupported_architecture(healthy_after: Tasks) -> None:
    elf = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8) + struct.pack("<HHI", 2, 183, 1)
    bundle = zip_files({"bootstrap": (elf + bytes(64), 0o755)})

    result = healthy_after.run_bundle(bundle)

    assert _error(result) == ("Bundle.UnsupportedArchitecture", False)
    assert result.error is not None
    assert "aarch64" in result.error.message


# --- the invocation ---------------------------------------------------------------------------

@pytest.mark.parametrize(("handler", "error_type", "function_error_type"), [
    ("init-error", "Runtime.InitError", "Runtime.ImportModuleError"),
    ("exit3", "Runtime.ExitError", None),
    ("error", "Function.Error", "WhaleNotFound"),
    ("bad-mode", "Runtime.InvalidResponseModeHeader", None),
])
def test_what_the_runtime_did_becomes_the_error(healthy_after: Tasks, handler: str,
                                                error_type: str,
                                                function_error_type: str | None) -> None:
    result = healthy_after.run_bundle(pipeline_bundle(), handler=handler)

    assert _error(result) == (error_type, False)
    assert result.error is not None
    got = result.error.function_error
    assert (got.error_type if got else None) == function_error_type


def test_a_response_over_the_limit_is_response_size_too_large(local_stack: LocalStack,
                                                            work_root: Path) -> None:
    tasks = _with(local_stack, work_root, max_response_bytes="1000")

    over = tasks.run_bundle(pipeline_bundle(), handler="big", env={"RESPONSE_BYTES": "1001"})
    at = tasks.run_bundle(pipeline_bundle(), handler="big", env={"RESPONSE_BYTES": "1000"})

    assert _error(over) == ("Function.ResponseSizeTooLarge", False)
    assert at.status == "succeeded", at.error
    assert at.response == "a" * 998


def test_no_answer_before_the_deadline_is_timed_out(healthy_after: Tasks) -> None:
    started = time.monotonic()
    result = healthy_after.run_bundle(
        zip_files({"bootstrap": (b"#!/bin/sh\nexec sleep 600\n", 0o755)}), timeout_ms=500)

    assert _error(result) == ("Sandbox.Timedout", False)
    assert time.monotonic() - started < 60  # far inside the sleep: it was stopped, not waited


def test_an_environment_that_cannot_be_contained_is_sandbox_failure(
        local_stack: LocalStack, tmp_path: Path) -> None:
    # The sandbox uid cannot reach a work root inside a private directory: the cold-start probe
    # finds a control missing, and every attempt is refused rather than run uncontained.
    if os.geteuid() != 0:
        pytest.skip("the separate-uid isolation needs a root runner")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    tasks = Tasks(local_stack, settings_for(local_stack, private / "work"))

    assert _error(tasks.run_bundle(pipeline_bundle())) == ("Sandbox.Failure", True)
