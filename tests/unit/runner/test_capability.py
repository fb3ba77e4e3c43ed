"""The capability token is decoded without verification, only to fail fast."""

from __future__ import annotations

import time

import pytest

from runner.errors import TokenRejectedError
from runner.models import TaskPayload
from runner.platform import capability
from tests.support.payloads import SHA, claims, payload, unsigned_token


def _payload(token: str, **overrides: object) -> TaskPayload:
    return TaskPayload.model_validate(payload(capability_token=token, **overrides))


def test_a_token_for_this_task_attempt_and_bundle_is_accepted() -> None:
    got = capability.check(_payload(unsigned_token()))

    assert got.task_id == "task-1"
    assert got.bundle_sha256 == SHA
    assert got.prefixes.write == ["s3://udf-outputs/acme/"]


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"task_id": "task-2"}, "task_id"),
    ({"attempt": 2}, "attempt"),
    ({"bundle_sha256": "cd" * 32}, "bundle_sha256"),
])
def test_a_token_for_another_task_attempt_or_bundle_is_rejected(
        overrides: dict[str, object], reason: str) -> None:
    with pytest.raises(TokenRejectedError, match=reason):
        capability.check(_payload(unsigned_token(claims(**overrides))))


def test_an_expired_token_is_rejected() -> None:
    old = int(time.time()) - 3600
    with pytest.raises(TokenRejectedError, match="expired"):
        capability.check(_payload(unsigned_token(claims(exp=old))))


def test_a_token_not_yet_valid_is_rejected() -> None:
    later = int(time.time()) + 3600
    with pytest.raises(TokenRejectedError, match="not valid before"):
        capability.check(_payload(unsigned_token(claims(nbf=later))))


@pytest.mark.parametrize("token", [
    "not-a-jwt-at-all-really",
    "aaaaaaaaaaaa.bbbbbbbbbbbb",
    "!!!!!!!!.@@@@@@@@.########",
    unsigned_token(alg="none"),
    unsigned_token({"task_id": "task-1"}),
    unsigned_token(claims(attempt="1")),
])
def test_malformed_tokens_are_rejected_without_echoing_the_token(token: str) -> None:
    with pytest.raises(TokenRejectedError) as caught:
        capability.check(_payload(token))

    assert token not in str(caught.value)
