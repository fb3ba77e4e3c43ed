"""The local credential minter: `POST /v1/credentials` (`contracts/credential-minter.openapi.yaml`).

It verifies the bearer token, checks every requested location against the token's prefixes
(read: within read or write prefixes; write: within write prefixes), and returns STS credentials
for a role whose own policy allows exactly the requested locations (`scope_policy`). moto ignores
session policies but enforces a role's policies, so the role is the scope: one role per distinct
policy, named by its digest, assumed with a session named after the task attempt.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import re
import threading
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from devstack._http import (
    DEFAULT_MAX_IN_FLIGHT,
    RETRY_AFTER_SECONDS,
    ApiError,
    ApiRequest,
    JsonApiServer,
    JsonObject,
    invalid_body,
    invalid_request,
)
from devstack.claims import Claims
from devstack.s3_uri import S3Uri
from devstack.scope_policy import Access, scope_policy
from devstack.tokens import TokenVerifier

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_sts import STSClient

CREDENTIALS_PATH = "/v1/credentials"
MAX_PREFIXES = 32
#: STS's own bounds on a session's lifetime; within them it ends when the token does.
MIN_SESSION_SECONDS, MAX_SESSION_SECONDS = 900, 3600


class CredentialRequest(BaseModel):
    """The body of `POST /v1/credentials`."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    access: Literal["read", "write"]
    prefixes: Annotated[list[str], Field(min_length=1, max_length=MAX_PREFIXES)]


class CredentialMinter(JsonApiServer):
    """Mints S3 credentials scoped to prefixes the caller's token allows."""

    def __init__(self, verifier: TokenVerifier, *, iam: IAMClient, sts: STSClient,
                 trusted_principal: str, port: int = 0,
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> None:
        self._verifier = verifier
        self._iam = iam
        self._sts = sts
        self._trust_policy = json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": trusted_principal},
                           "Action": "sts:AssumeRole"}],
        })
        self._account = trusted_principal.split(":")[4]
        self._ready_roles: set[str] = set()
        self._lock = threading.Lock()
        super().__init__("credential-minter", {CREDENTIALS_PATH: self._mint}, port=port,
                         max_in_flight=max_in_flight)

    def _mint(self, request: ApiRequest) -> JsonObject:
        claims = self._verifier.claims_of(request)
        try:
            ask = CredentialRequest.model_validate(request.body)
            locations = [S3Uri.parse(prefix) for prefix in ask.prefixes]
        except ValidationError as e:
            raise invalid_body(e) from e
        except ValueError as e:
            raise invalid_request(str(e)) from e
        _check_scope(claims, ask.access, locations)
        try:
            role_arn = self._role(json.dumps(scope_policy(ask.access, locations), sort_keys=True))
            return self._assume(role_arn, claims)
        except (BotoCoreError, ClientError) as e:
            raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, "unavailable",
                           f"the embedded IAM/STS failed: {e}",
                           {"Retry-After": str(RETRY_AFTER_SECONDS)}) from e

    def _role(self, policy: str) -> str:
        name = f"udf-scope-{hashlib.sha256(policy.encode()).hexdigest()[:40]}"
        with self._lock:
            ready = name in self._ready_roles
        if not ready:
            # A concurrent request for the same scope may have made it; its policy is the same.
            with contextlib.suppress(self._iam.exceptions.EntityAlreadyExistsException):
                self._iam.create_role(RoleName=name, AssumeRolePolicyDocument=self._trust_policy,
                                      Description="udf-runner devstack: one credential scope")
            self._iam.put_role_policy(RoleName=name, PolicyName="scope", PolicyDocument=policy)
            with self._lock:
                self._ready_roles.add(name)
        return f"arn:aws:iam::{self._account}:role/{name}"

    def _assume(self, role_arn: str, claims: Claims) -> JsonObject:
        lifetime = claims.exp - int(time.time())
        session = self._sts.assume_role(
            RoleArn=role_arn,
            RoleSessionName=_session_name(claims),
            DurationSeconds=max(MIN_SESSION_SECONDS, min(MAX_SESSION_SECONDS, lifetime)),
        )["Credentials"]
        return {
            "access_key_id": session["AccessKeyId"],
            "secret_access_key": session["SecretAccessKey"],
            "session_token": session["SessionToken"],
            "expiration": _iso(session["Expiration"]),
        }


def _check_scope(claims: Claims, access: Access, locations: list[S3Uri]) -> None:
    allowed = claims.prefixes.writable() if access == "write" else claims.prefixes.readable()
    for location in locations:
        if not any(grant.covers(location) for grant in allowed):
            raise ApiError(HTTPStatus.FORBIDDEN, "prefix_not_allowed",
                           f"{access} access to {location} is outside the token's prefixes")


def _session_name(claims: Claims) -> str:
    return re.sub(r"[^\w+=,.@-]", "-", f"{claims.task_id}.{claims.attempt}")[:64]


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
