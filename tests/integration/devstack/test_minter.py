"""The credential minter on the local stack: real HTTP, real STS credentials, real S3 enforcement.

Also: a token with a bad signature, an expired one and one for another task are refused by both
services (the minter and the Query Service).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
import urllib3
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devstack.claims import Grant
from devstack.contracts import Contract
from devstack.stack import LocalStack
from devstack.tokens import SigningKey, TokenIssuer

MINT = "/v1/credentials"
QUERY = "/v1/query"
BUNDLE = "s3://udf-bundles/acme/alerts/whale-transfer.zip"
BUNDLE_BYTES = b"PK\x05\x06" + b"\x00" * 18  # an empty zip: the content does not matter here
OUTPUTS = "s3://udf-outputs/acme/task-1/"
INPUTS = "s3://udf-inputs/acme/shared/"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack.start() as started:
        started.access.upload(BUNDLE, BUNDLE_BYTES)
        started.access.upload("s3://udf-bundles/acme/alerts/other.zip", b"other")
        started.access.upload(f"{INPUTS}prices.csv", b"token,price\n")
        started.access.upload("s3://udf-outputs/acme/task-2/secret.json", b"{}")
        yield started


def task_grant(task_id: str = "task-1", **changes: Any) -> Grant:
    return Grant.for_task(task_id=task_id, attempt=1, bundle_uri=BUNDLE,
                          bundle_sha256="1" * 64, datasets=["erc20_transfers"],
                          output_prefix=f"s3://udf-outputs/acme/{task_id}/",
                          input_prefixes=[INPUTS], **changes)


@pytest.fixture(scope="module")
def token(stack: LocalStack) -> str:
    return stack.issue_token(task_grant())


def call(url: str, path: str, body: Any, token: str) -> tuple[int, Any]:
    """POST to a service; the response is checked against its contract before it is returned."""
    response = urllib3.request("POST", url + path, json=body, retries=False,
                               headers={"Authorization": f"Bearer {token}"})
    payload = response.json()
    contract = "credential-minter" if path == MINT else "query-service"
    Contract.load(contract).check_response(path, "POST", response.status, payload,
                                           dict(response.headers))
    return response.status, payload


def mint(stack: LocalStack, token: str, access: str, *prefixes: str) -> tuple[int, Any]:
    return call(stack.access.minter_url, MINT, {"access": access, "prefixes": list(prefixes)},
                token)


def s3_with(stack: LocalStack, credentials: dict[str, str]) -> Any:
    return boto3.session.Session().client(
        "s3", endpoint_url=stack.access.s3_endpoint_url, region_name=stack.access.region,
        aws_access_key_id=credentials["access_key_id"],
        aws_secret_access_key=credentials["secret_access_key"],
        aws_session_token=credentials["session_token"])


def denied(operation: Callable[[], object]) -> str:
    with pytest.raises(ClientError) as refused:
        operation()
    return str(refused.value.response["Error"]["Code"])


# Minting


def test_write_credentials_per_the_contract(stack: LocalStack, token: str) -> None:
    status, credentials = mint(stack, token, "write", OUTPUTS)

    assert status == 200
    assert credentials["access_key_id"].startswith("ASIA")
    expires = time.strptime(credentials["expiration"], "%Y-%m-%dT%H:%M:%SZ")
    assert time.mktime(expires) > time.mktime(time.gmtime())


def test_write_credentials_reach_inside_the_prefix_and_nothing_else(stack: LocalStack,
                                                                    token: str) -> None:
    _, credentials = mint(stack, token, "write", OUTPUTS)
    s3 = s3_with(stack, credentials)

    s3.put_object(Bucket="udf-outputs", Key="acme/task-1/result.json", Body=b'{"ok": true}')
    multipart = TransferConfig(multipart_threshold=5 * 1024 * 1024,
                               multipart_chunksize=5 * 1024 * 1024)
    s3.upload_fileobj(io.BytesIO(b"x" * (11 * 1024 * 1024)), "udf-outputs",
                      "acme/task-1/big.bin", Config=multipart)
    listed = s3.list_objects_v2(Bucket="udf-outputs", Prefix="acme/task-1/")

    assert s3.get_object(Bucket="udf-outputs", Key="acme/task-1/result.json")["Body"].read() == (
        b'{"ok": true}')
    assert sorted(item["Key"] for item in listed["Contents"]) == [
        "acme/task-1/big.bin", "acme/task-1/result.json"]
    assert denied(lambda: s3.put_object(Bucket="udf-outputs", Key="acme/task-2/x", Body=b"")) == (
        "AccessDenied")
    assert denied(lambda: s3.put_object(Bucket="udf-outputs", Key="acme/task-10/x", Body=b"")) == (
        "AccessDenied")
    assert denied(lambda: s3.get_object(Bucket="udf-outputs", Key="acme/task-2/secret.json")) == (
        "AccessDenied")
    assert denied(lambda: s3.get_object(Bucket="udf-bundles", Key="acme/alerts/other.zip")) == (
        "AccessDenied")
    assert denied(lambda: s3.list_objects_v2(Bucket="udf-outputs", Prefix="acme/")) == (
        "AccessDenied")
    assert denied(lambda: s3.list_objects_v2(Bucket="udf-outputs")) == "AccessDenied"
    assert denied(lambda: s3.delete_object(Bucket="udf-outputs",
                                           Key="acme/task-1/result.json")) == "AccessDenied"


def test_dots_in_a_prefix_are_literal(stack: LocalStack) -> None:
    # moto alone would read the policy's "task.3" as a regular expression matching "taskX3".
    dotted = stack.issue_token(task_grant(task_id="task.3"))
    stack.access.upload("s3://udf-outputs/acme/taskX3/private.json", b"{}")
    _, credentials = mint(stack, dotted, "write", "s3://udf-outputs/acme/task.3/")
    s3 = s3_with(stack, credentials)

    s3.put_object(Bucket="udf-outputs", Key="acme/task.3/out.json", Body=b"{}")
    assert denied(lambda: s3.get_object(Bucket="udf-outputs", Key="acme/taskX3/private.json")) == (
        "AccessDenied")


def test_copying_from_outside_the_scope_is_refused(stack: LocalStack, token: str) -> None:
    # moto never checks read access to a copy's source, so the embedded S3 refuses copies.
    _, credentials = mint(stack, token, "write", OUTPUTS)
    s3 = s3_with(stack, credentials)

    assert denied(lambda: s3.copy_object(
        Bucket="udf-outputs", Key="acme/task-1/stolen.json",
        CopySource={"Bucket": "udf-outputs", "Key": "acme/task-2/secret.json"})) == "AccessDenied"


def test_scoped_credentials_cannot_widen_themselves(stack: LocalStack, token: str) -> None:
    _, credentials = mint(stack, token, "write", OUTPUTS)
    session = {"endpoint_url": stack.access.s3_endpoint_url, "region_name": stack.access.region,
               "aws_access_key_id": credentials["access_key_id"],
               "aws_secret_access_key": credentials["secret_access_key"],
               "aws_session_token": credentials["session_token"]}
    iam = boto3.session.Session().client("iam", **session)
    sts = boto3.session.Session().client("sts", **session)
    s3 = s3_with(stack, credentials)
    role = sts.get_caller_identity()["Arn"].split("/")[1]

    assert denied(lambda: iam.put_role_policy(
        RoleName=role, PolicyName="more",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"}]}))) == "AccessDenied"
    assert denied(lambda: sts.assume_role(RoleArn=f"arn:aws:iam::123456789012:role/{role}",
                                          RoleSessionName="again")) == "AccessDenied"
    assert denied(lambda: s3.create_bucket(Bucket="udf-mine")) == "AccessDenied"
    assert denied(lambda: s3.put_bucket_policy(Bucket="udf-outputs", Policy="{}")) == (
        "AccessDenied")


def test_read_credentials_for_the_bundle_read_that_object_only(stack: LocalStack,
                                                               token: str) -> None:
    status, credentials = mint(stack, token, "read", BUNDLE, INPUTS)
    s3 = s3_with(stack, credentials)

    assert status == 200
    assert s3.get_object(Bucket="udf-bundles",
                         Key="acme/alerts/whale-transfer.zip")["Body"].read() == BUNDLE_BYTES
    assert s3.get_object(Bucket="udf-inputs", Key="acme/shared/prices.csv")["Body"].read() == (
        b"token,price\n")
    assert denied(lambda: s3.get_object(Bucket="udf-bundles", Key="acme/alerts/other.zip")) == (
        "AccessDenied")
    assert denied(lambda: s3.put_object(Bucket="udf-inputs", Key="acme/shared/x", Body=b"")) == (
        "AccessDenied")


def test_write_implies_read_within_the_write_prefix(stack: LocalStack, token: str) -> None:
    status, _ = mint(stack, token, "read", f"{OUTPUTS}sub/")

    assert status == 200


@pytest.mark.parametrize(("access", "prefix"), [
    ("write", "s3://udf-outputs/acme/task-2/"),  # another task's outputs
    ("write", "s3://udf-outputs/acme/task-10/"),  # not on a "/" boundary
    ("write", "s3://udf-outputs/acme/"),  # the parent
    ("write", "s3://udf-outputs/"),
    ("write", "s3://udf-outputs-2/acme/task-1/"),  # another bucket
    ("write", INPUTS),  # readable is not writable
    ("write", BUNDLE),
    ("read", "s3://udf-bundles/acme/alerts/other.zip"),  # beside the bundle
    ("read", "s3://udf-bundles/acme/alerts/"),
])
def test_a_prefix_outside_the_token_is_a_403(stack: LocalStack, token: str, access: str,
                                             prefix: str) -> None:
    status, body = mint(stack, token, access, OUTPUTS if access == "write" else BUNDLE, prefix)

    assert (status, body["error"]["code"]) == (403, "prefix_not_allowed")
    assert prefix in body["error"]["message"]


@pytest.mark.parametrize("body", [
    {"access": "write", "prefixes": ["s3://udf-outputs/acme/task-1/../task-2/"]},
    {"access": "write", "prefixes": ["s3://udf-outputs/acme/task-1/*"]},
    {"access": "write", "prefixes": ["s3://udf-outputs/acme/task-1//x"]},
    {"access": "write", "prefixes": ["https://udf-outputs/acme/task-1/"]},
    {"access": "write", "prefixes": []},
    {"access": "admin", "prefixes": [OUTPUTS]},
    {"prefixes": [OUTPUTS]},
    {"access": "write", "prefixes": OUTPUTS},
])
def test_a_malformed_request_is_a_400(stack: LocalStack, token: str, body: Any) -> None:
    status, reply = call(stack.access.minter_url, MINT, body, token)

    assert (status, reply["error"]["code"]) == (400, "invalid_request")


def test_a_token_for_a_short_task_still_gets_stss_minimum(stack: LocalStack) -> None:
    short = stack.issue_token(task_grant(ttl_seconds=60))

    status, credentials = mint(stack, short, "write", OUTPUTS)

    assert status == 200
    assert credentials["session_token"]


# The embedded S3 itself


def test_unknown_credentials_are_refused_by_s3(stack: LocalStack) -> None:
    s3 = boto3.session.Session().client(
        "s3", endpoint_url=stack.access.s3_endpoint_url, region_name=stack.access.region,
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="wJalrXUtnFEMI")

    assert denied(s3.list_buckets) == "InvalidAccessKeyId"


@pytest.mark.parametrize("path", ["/moto-api/reset-auth", "/moto-api/reset",
                                  "/moto-api/data.json", "/latest/meta-data/iam/"])
def test_motos_control_api_is_not_reachable(stack: LocalStack, path: str) -> None:
    response = urllib3.request("POST", stack.access.s3_endpoint_url + path, body=b"1000000",
                               retries=False)

    assert response.status == 403
    assert stack.access.client("s3").head_object(Bucket="udf-bundles",
                                                 Key="acme/alerts/whale-transfer.zip")


# Refused by both services


def both(stack: LocalStack, token: str) -> dict[str, tuple[int, Any]]:
    return {
        "minter": mint(stack, token, "write", OUTPUTS),
        "query": call(stack.access.query_url, QUERY, {"sql": "select count(*) from "
                                                             "erc20_transfers"}, token),
    }


def test_the_right_token_is_accepted_by_both_services(stack: LocalStack, token: str) -> None:
    assert {name: status for name, (status, _) in both(stack, token).items()} == {
        "minter": 200, "query": 200}


def test_a_token_with_a_bad_signature_is_refused_by_both(stack: LocalStack) -> None:
    forger = TokenIssuer(SigningKey(Ed25519PrivateKey.generate(), stack.issuer.key.kid))

    replies = both(stack, forger.issue(task_grant()))

    assert {name: (status, body["error"]["code"]) for name, (status, body) in replies.items()} == {
        "minter": (401, "invalid_token"), "query": (401, "invalid_token")}


def test_an_expired_token_is_refused_by_both(stack: LocalStack) -> None:
    issued = int(time.time()) - 7200
    expired = stack.issuer.sign(stack.issuer.claims(task_grant(ttl_seconds=3600), now=issued))

    replies = both(stack, expired)

    assert {name: (status, body["error"]["message"]) for name, (status, body) in
            replies.items()} == {"minter": (401, "token has expired"),
                                 "query": (401, "token has expired")}


def test_a_token_for_another_task_is_refused_by_both(stack: LocalStack) -> None:
    # Task 2's token is genuine, but its scope is task 2's: not task 1's outputs, and not the
    # datasets task 1 may query.
    other = stack.issue_token(Grant.for_task(
        task_id="task-2", attempt=1, bundle_uri="s3://udf-bundles/acme/alerts/other.zip",
        bundle_sha256="2" * 64, datasets=["blocks"],
        output_prefix="s3://udf-outputs/acme/task-2/"))

    replies = both(stack, other)

    assert {name: (status, body["error"]["code"]) for name, (status, body) in replies.items()} == {
        "minter": (403, "prefix_not_allowed"), "query": (403, "dataset_not_allowed")}
