"""Capability tokens: what the issuer signs, and every way the services' verifier refuses one."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from devstack.claims import Grant, Prefixes
from devstack.contracts import Contract
from devstack.tokens import SigningKey, TokenIssuer, TokenVerifier
from runner.errors import TokenRejectedError
from runner.platform import capability

SHA = "ab" * 32


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def issuer(key: SigningKey) -> TokenIssuer:
    return TokenIssuer(key)


@pytest.fixture
def verifier(key: SigningKey) -> TokenVerifier:
    return key.verifier()


def grant(**changes: Any) -> Grant:
    fields: dict[str, Any] = {
        "task_id": "task-7f3a", "attempt": 2, "bundle_sha256": SHA,
        "datasets": ["erc20_transfers"],
        "prefixes": Prefixes(read=["s3://udf-bundles/acme/fn.zip"],
                             write=["s3://udf-outputs/acme/task-7f3a/"]),
    }
    return Grant(**{**fields, **changes})


def payload(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    decoded: dict[str, Any] = json.loads(raw)
    return decoded


def test_the_token_carries_the_contracts_claims_and_header(issuer: TokenIssuer,
                                                           key: SigningKey) -> None:
    token = issuer.issue(grant())

    claims = payload(token)
    Contract.load("credential-minter").check_schema("CapabilityTokenClaims", claims)
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "typ": "JWT", "kid": key.kid}
    assert claims["sub"] == "task:task-7f3a/2"
    assert claims["aud"] == "udf-platform"
    assert claims["prefixes"] == {"read": ["s3://udf-bundles/acme/fn.zip"],
                                  "write": ["s3://udf-outputs/acme/task-7f3a/"]}
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["nbf"] == claims["iat"]


def test_the_runner_decodes_what_the_issuer_signs(issuer: TokenIssuer) -> None:
    claims = capability.decode(issuer.issue(grant()))

    assert (claims.task_id, claims.attempt, claims.bundle_sha256) == ("task-7f3a", 2, SHA)
    assert claims.datasets == ["erc20_transfers"]


def test_verify_returns_the_claims(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    claims = verifier.verify(issuer.issue(grant()))

    assert claims.task_id == "task-7f3a"
    assert claims.prefixes.writable()[0].key == "acme/task-7f3a/"


def test_a_token_signed_by_another_key_is_refused(verifier: TokenVerifier, key: SigningKey) -> None:
    # Same kid, other key: only the signature can tell.
    forged = TokenIssuer(SigningKey(Ed25519PrivateKey.generate(), key.kid)).issue(grant())

    with pytest.raises(TokenRejectedError, match="signature does not verify"):
        verifier.verify(forged)


def test_a_token_with_an_unknown_kid_is_refused(verifier: TokenVerifier) -> None:
    with pytest.raises(TokenRejectedError, match="unknown kid"):
        verifier.verify(TokenIssuer(SigningKey.generate()).issue(grant()))


def test_a_tampered_payload_is_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    header, _, signature = issuer.issue(grant()).split(".")
    claims = payload(issuer.issue(grant()))
    claims["prefixes"]["write"] = ["s3://udf-outputs/"]
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()

    with pytest.raises(TokenRejectedError, match="signature"):
        verifier.verify(f"{header}.{body}.{signature}")


def test_an_expired_token_is_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    token = issuer.sign(issuer.claims(grant(ttl_seconds=60), now=int(time.time()) - 3600))

    with pytest.raises(TokenRejectedError, match="expired"):
        verifier.verify(token)


def test_a_token_not_valid_yet_is_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    token = issuer.sign(issuer.claims(grant(), now=int(time.time()) + 3600))

    with pytest.raises(TokenRejectedError, match="not valid yet"):
        verifier.verify(token)


@pytest.mark.parametrize(("claim", "value", "reason"), [
    ("aud", "another-service", "(?i)audience"),
    ("iss", "someone-else", "(?i)issuer"),
    ("sub", "task:other/2", "sub"),
    ("attempt", "2", "attempt"),
    ("datasets", ["Not A Name"], "datasets"),
    ("prefixes", {"read": ["s3://udf-outputs/acme/../x/"], "write": []}, "prefixes"),
    ("extra", True, "extra"),
])
def test_claims_outside_the_contract_are_refused(key: SigningKey, verifier: TokenVerifier,
                                                 claim: str, value: Any, reason: str) -> None:
    issuer = TokenIssuer(key)
    claims = issuer.claims(grant()).model_dump(mode="json")
    claims[claim] = value
    token = jwt.encode(claims, key.private_key, algorithm="EdDSA", headers={"kid": key.kid})

    with pytest.raises(TokenRejectedError, match=reason):
        verifier.verify(token)


def test_a_missing_claim_is_refused(key: SigningKey, verifier: TokenVerifier) -> None:
    claims = TokenIssuer(key).claims(grant()).model_dump(mode="json")
    del claims["jti"]
    token = jwt.encode(claims, key.private_key, algorithm="EdDSA", headers={"kid": key.kid})

    with pytest.raises(TokenRejectedError, match="jti"):
        verifier.verify(token)


def test_alg_none_and_symmetric_confusion_are_refused(key: SigningKey, issuer: TokenIssuer,
                                                      verifier: TokenVerifier) -> None:
    claims = issuer.claims(grant()).model_dump(mode="json")
    unsigned = jwt.encode(claims, "", algorithm="none", headers={"kid": key.kid})
    hmac_key = b"k" * 32  # an attacker's guess at a shared secret
    symmetric = jwt.encode(claims, hmac_key, algorithm="HS256", headers={"kid": key.kid})

    for token in (unsigned, symmetric):
        with pytest.raises(TokenRejectedError, match="invalid"):
            verifier.verify(token)


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b.c", "...."])
def test_garbage_is_refused(verifier: TokenVerifier, token: str) -> None:
    with pytest.raises(TokenRejectedError):
        verifier.verify(token)


def test_refusals_never_echo_the_token(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    token = issuer.sign(issuer.claims(grant(ttl_seconds=1), now=int(time.time()) - 100))

    with pytest.raises(TokenRejectedError) as refused:
        verifier.verify(token)
    assert token not in str(refused.value)
    assert token.split(".")[2] not in str(refused.value)


@pytest.mark.parametrize("changes", [
    {"task_id": "has space"},
    {"attempt": 0},
    {"bundle_sha256": "AB" * 32},
    {"prefixes": {"write": ["s3://udf-outputs/acme/*"]}},
    {"ttl_seconds": 0},
])
def test_an_invalid_grant_is_not_signed(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        grant(**changes)


def test_grant_for_task_reads_bundle_and_inputs_and_writes_outputs() -> None:
    made = Grant.for_task(task_id="t1", attempt=1, bundle_uri="s3://udf-bundles/acme/fn.zip",
                          bundle_sha256=SHA, datasets=["blocks"],
                          output_prefix="s3://udf-outputs/acme/t1/",
                          input_prefixes=["s3://udf-inputs/acme/"])

    assert made.prefixes.read == ["s3://udf-bundles/acme/fn.zip", "s3://udf-inputs/acme/"]
    assert made.prefixes.write == ["s3://udf-outputs/acme/t1/"]
    assert [str(uri) for uri in made.prefixes.readable()] == [
        "s3://udf-bundles/acme/fn.zip", "s3://udf-inputs/acme/", "s3://udf-outputs/acme/t1/"]
