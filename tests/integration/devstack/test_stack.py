"""`udf-runner devstack` (run_foreground) as a real process; reaching a stack from its output."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import urllib3

from devstack.access import AdminCredentials, StackAccess, StackError
from devstack.claims import Grant
from devstack.s3_server import EmbeddedS3
from devstack.stack import LocalStack

FOREGROUND = "import sys; from devstack.stack import run_foreground; sys.exit(run_foreground())"
BUNDLE = "s3://udf-bundles/acme/demo/fn.zip"


def children_of(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


@contextlib.contextmanager
def devstack_command() -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """The devstack command, once it has printed its environment; in its own session, so a
    test can Ctrl-C its whole process group."""
    process = subprocess.Popen([sys.executable, "-c", FOREGROUND], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert process.stdout is not None
    lines: list[str] = []
    while not lines or not lines[-1].startswith("Buckets:"):
        line = process.stdout.readline()
        assert line, f"devstack exited early: {process.communicate()[1]}"
        lines.append(line.rstrip("\n"))
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


@pytest.fixture(scope="module")
def foreground() -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    with devstack_command() as running:
        yield running


def exports(lines: list[str]) -> dict[str, str]:
    return dict(line.removeprefix("export ").split("=", 1) for line in lines
                if line.startswith("export "))


def test_the_printed_environment_reaches_every_service(
        foreground: tuple[subprocess.Popen[str], list[str]]) -> None:
    _, lines = foreground
    access = StackAccess.from_environ(exports(lines))
    assert access is not None

    sha256 = access.upload_bundle(b"PK\x05\x06" + b"\x00" * 18, BUNDLE)
    token = access.issue_token(Grant.for_task(task_id="demo", attempt=1, bundle_uri=BUNDLE,
                                              bundle_sha256=sha256, datasets=["blocks"]))
    auth = {"Authorization": f"Bearer {token}"}
    minted = urllib3.request("POST", f"{access.minter_url}/v1/credentials", headers=auth,
                             json={"access": "read", "prefixes": [BUNDLE]}).json()
    queried = urllib3.request("POST", f"{access.query_url}/v1/query", headers=auth,
                              json={"sql": "select count(*) from blocks"}).json()
    s3 = boto3.session.Session().client(
        "s3", endpoint_url=access.s3_endpoint_url, region_name=access.region,
        aws_access_key_id=minted["access_key_id"],
        aws_secret_access_key=minted["secret_access_key"],
        aws_session_token=minted["session_token"])

    assert s3.get_object(Bucket="udf-bundles", Key="acme/demo/fn.zip")["Body"].read()[:2] == b"PK"
    assert queried["rows"] == [[1000]]


def test_secrets_are_printed_only_in_the_labelled_block(
        foreground: tuple[subprocess.Popen[str], list[str]]) -> None:
    _, lines = foreground
    env = exports(lines)
    label = next(i for i, line in enumerate(lines) if "DEVELOPMENT-ONLY SECRETS" in line)
    secrets = {"UDF_DEVSTACK_ADMIN_SECRET_ACCESS_KEY", "UDF_DEVSTACK_ADMIN_ACCESS_KEY_ID",
               "UDF_DEVSTACK_ISSUER_KEY"}

    assert {name for name in env if name.startswith("UDF_RUNNER_")} == {
        "UDF_RUNNER_MINTER_URL", "UDF_RUNNER_QUERY_URL", "UDF_RUNNER_S3_ENDPOINT_URL"}
    for index, line in enumerate(lines):
        if any(env[name] in line for name in secrets):
            assert index > label


@pytest.mark.parametrize("stop", ["SIGTERM to the process", "Ctrl-C to the process group"])
def test_a_signal_stops_everything_cleanly(stop: str) -> None:
    with devstack_command() as (process, _):
        children = children_of(process.pid)
        assert children  # the embedded S3

        if stop.startswith("SIGTERM"):
            process.send_signal(signal.SIGTERM)
        else:
            os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=60)

    assert process.returncode == 0, err
    assert "stopping" in out
    assert "Traceback" not in err
    assert not [child for child in children if Path(f"/proc/{child}").exists()]


def test_environ_without_a_stack_names_none_and_a_partial_one_is_an_error() -> None:
    assert StackAccess.from_environ({"UDF_RUNNER_MINTER_URL": "http://127.0.0.1:1"}) is None
    with pytest.raises(StackError, match="UDF_DEVSTACK_ISSUER_KEY"):
        StackAccess.from_environ({
            "UDF_DEVSTACK_ISSUER_URL": "http://127.0.0.1:1",
            "UDF_RUNNER_MINTER_URL": "http://127.0.0.1:2",
            "UDF_RUNNER_QUERY_URL": "http://127.0.0.1:3",
            "UDF_RUNNER_S3_ENDPOINT_URL": "http://127.0.0.1:4",
            "UDF_DEVSTACK_ADMIN_ACCESS_KEY_ID": "AKIA",
            "UDF_DEVSTACK_ADMIN_SECRET_ACCESS_KEY": "x",
        })


def test_an_s3_child_that_dies_at_startup_is_reported_with_its_output() -> None:
    failing = "import sys; sys.stderr.write('boom: moto is missing\\n'); sys.exit(3)"
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - EmbeddedS3 closes it
    process = subprocess.Popen([sys.executable, "-c", failing], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=stderr)

    with EmbeddedS3(process, stderr) as s3, pytest.raises(StackError, match="boom: moto"):
        s3.ready()


def test_an_s3_child_that_never_announces_itself_is_reported() -> None:
    silent = "import sys; sys.stdin.read()"
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - EmbeddedS3 closes it
    process = subprocess.Popen([sys.executable, "-c", silent], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=stderr)

    with EmbeddedS3(process, stderr) as s3, pytest.raises(StackError, match="did not start"):
        s3.ready(timeout=0.5)
    assert process.returncode == -signal.SIGKILL  # stopped and reaped, without waiting on it


def test_an_s3_child_whose_moto_accepts_unknown_keys_refuses_to_start() -> None:
    """Fail closed: the child checks that a request signed by a key no one has is refused
    before it announces itself. With moto's auth left off, it must not start."""
    env = {name: value for name, value in os.environ.items()
           if name != "INITIAL_NO_AUTH_ACTION_COUNT"}  # unset: moto's auth is off
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - EmbeddedS3 closes it
    process = subprocess.Popen([sys.executable, "-m", "devstack._moto_server"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                               env=env)

    with EmbeddedS3(process, stderr) as s3, pytest.raises(StackError,
                                                          match="IAM auth is not on"):
        s3.ready()


def test_an_upload_s3_refuses_is_a_stack_error_naming_why(local_stack: LocalStack) -> None:
    """Uploads are one signed PUT (no SDK): S3's refusal comes back with its code, and what
    it accepts is stored byte for byte under the SHA-256 returned."""
    with pytest.raises(StackError, match=r"s3://no-such-bucket/fn\.zip: HTTP 404 NoSuchBucket"):
        local_stack.access.upload("s3://no-such-bucket/fn.zip", b"PK")
    wrong = dataclasses.replace(local_stack.access, admin=AdminCredentials(
        local_stack.access.admin.access_key_id, "not-the-secret"))
    with pytest.raises(StackError, match="HTTP 403 SignatureDoesNotMatch"):
        wrong.upload(BUNDLE, b"PK")

    data = os.urandom(70_000)
    sha256 = local_stack.access.upload("s3://udf-bundles/acme/demo/a=b+c~(1).zip", data)
    stored = local_stack.access.client("s3").get_object(Bucket="udf-bundles",
                                                        Key="acme/demo/a=b+c~(1).zip")
    assert stored["Body"].read() == data
    assert sha256 == hashlib.sha256(data).hexdigest()


def test_listing_pages_through_every_object_under_a_prefix(local_stack: LocalStack) -> None:
    """A listing is signed GETs with a query string (`list-type`, `prefix`, then the
    continuation token S3 returns past 1,000 keys): every object under the prefix, no other."""
    prefix = f"listing/{os.urandom(4).hex()}/a=b+c~(1)/"
    keys = {f"{prefix}{n:04d}.json": n % 7 for n in range(1001)}
    for key, size in keys.items():
        local_stack.access.upload(f"s3://udf-outputs/{key}", b"x" * size)
    local_stack.access.upload(f"s3://udf-outputs/{prefix.rstrip('/')}-sibling.json", b"{}")

    assert dict(local_stack.access.list_objects("udf-outputs", prefix)) == keys
