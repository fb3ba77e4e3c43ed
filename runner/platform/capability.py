"""The capability token's claims, decoded WITHOUT verification to fail fast.

The runner holds no key: the services verify the token's signature and are the authority. The
runner only refuses, before any network call, a token that cannot be right for this attempt:
malformed, expired, or issued for another task, attempt or bundle. The token itself is never
logged or put in a message.

Claims (contracts/capability-token.schema.json): task_id, attempt, bundle_sha256, datasets,
prefixes {read, write}, exp, nbf, iat, iss, aud, sub, jti.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runner.errors import TokenRejectedError
from runner.models import TaskPayload

__all__ = ["CLOCK_SKEW_SECONDS", "Claims", "Prefixes", "check", "decode"]

#: Clock skew tolerated between the issuer and this environment.
CLOCK_SKEW_SECONDS = 30


class Prefixes(BaseModel):
    """S3 prefixes the task may read and write."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    read: list[str] = Field(default_factory=list)
    write: list[str] = Field(default_factory=list)


class Claims(BaseModel):
    """The claims the runner relies on (others are ignored)."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    task_id: str
    attempt: int
    bundle_sha256: str
    exp: int
    nbf: int | None = None
    datasets: list[str] = Field(default_factory=list)
    prefixes: Prefixes = Prefixes()


def decode(token: str) -> Claims:
    """The token's claims; `Task.TokenRejected` if it is not a well-formed JWT carrying them."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenRejectedError("capability token is not a JWT (expected three parts)")
    header = _segment(parts[0], "header")
    if not isinstance(header, dict) or header.get("alg") in (None, "none", "None"):
        raise TokenRejectedError("capability token is unsigned (alg none)")
    try:
        return Claims.model_validate(_segment(parts[1], "claims"))
    except ValidationError as e:
        fields = ", ".join(".".join(map(str, err["loc"])) or "claims" for err in e.errors())
        raise TokenRejectedError(f"capability token lacks valid claims: {fields}") from None


def check(payload: TaskPayload, now: float | None = None) -> Claims:
    """The claims, if the token is for this task, attempt and bundle and valid now."""
    claims = decode(payload.capability_token.get_secret_value())
    now = time.time() if now is None else now
    if claims.exp <= now - CLOCK_SKEW_SECONDS:
        raise TokenRejectedError(f"capability token expired at {claims.exp} (now {int(now)})")
    if claims.nbf is not None and claims.nbf > now + CLOCK_SKEW_SECONDS:
        raise TokenRejectedError(f"capability token is not valid before {claims.nbf}")
    mismatches = [
        name for name, ours, theirs in (
            ("task_id", payload.task_id, claims.task_id),
            ("attempt", payload.attempt, claims.attempt),
            ("bundle_sha256", payload.bundle.sha256, claims.bundle_sha256),
        ) if ours != theirs
    ]
    if mismatches:
        raise TokenRejectedError(
            f"capability token is not for this task: {', '.join(mismatches)} differ")
    return claims


def _segment(segment: str, what: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        raise TokenRejectedError(f"capability token {what} is not base64url JSON") from None
