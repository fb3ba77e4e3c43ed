"""Task payloads and capability tokens for tests."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

SHA = "ab" * 32


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims(**overrides: Any) -> dict[str, Any]:
    """Claims matching `payload()`'s defaults, valid for an hour."""
    now = int(time.time())
    return {
        "iss": "test", "aud": "udf-platform", "sub": "task:task-1/1", "task_id": "task-1",
        "attempt": 1, "bundle_sha256": SHA, "datasets": ["erc20_transfers"],
        "prefixes": {"read": ["s3://udf-bundles/acme/"], "write": ["s3://udf-outputs/acme/"]},
        "iat": now, "nbf": now, "exp": now + 3600, "jti": "j-1",
    } | overrides


def unsigned_token(claim_set: dict[str, Any] | None = None, alg: str = "EdDSA") -> str:
    """A JWT with the given claims and a signature nobody checks (the runner never verifies)."""
    return f"{_b64({'alg': alg, 'typ': 'JWT'})}.{_b64(claim_set or claims())}.c2lnbmF0dXJl"


def payload(**overrides: Any) -> dict[str, Any]:
    """A valid task payload (as JSON would carry it)."""
    return {
        "schema_version": 1, "task_id": "task-1", "attempt": 1,
        "capability_token": unsigned_token(),
        "bundle": {"uri": "s3://udf-bundles/acme/b.zip", "sha256": SHA, "runtime": "provided"},
        "event": {"hello": "world"}, "timeout_ms": 5000,
    } | overrides
