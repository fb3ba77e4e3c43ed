"""The minter and Query Service clients over real HTTP: bearer token only, retries on 429, 5xx,
timeouts and malformed bodies within the budget, and each failure mapped to its error type."""

from __future__ import annotations

import pytest

from runner.deadline import Deadline
from runner.errors import (
    AccessDeniedError,
    CredentialsUnavailableError,
    QueryFailedError,
    TokenRejectedError,
)
from runner.platform import ServiceClient
from runner.platform.minter import MinterClient
from runner.platform.query import QueryClient
from tests.support.scripted_server import Reply, ScriptedServer, scripted

TOKEN = "header.claims.signature-of-the-task"
CREDS = {"access_key_id": "ASIA1", "secret_access_key": "s", "session_token": "t",
         "expiration": "2030-01-01T00:00:00Z"}
ROWS = {"columns": [{"name": "n", "type": "BIGINT"}], "rows": [[1]], "truncated": False}


def _minter(server: ScriptedServer, **kwargs: float) -> MinterClient:
    return MinterClient(ServiceClient(server.url, TOKEN, **kwargs))  # type: ignore[arg-type]


def _query(server: ScriptedServer, **kwargs: float) -> QueryClient:
    return QueryClient(ServiceClient(server.url, TOKEN, **kwargs),  # type: ignore[arg-type]
                       max_rows=10)


def test_minting_sends_the_bearer_token_and_nothing_else() -> None:
    with scripted(Reply(200, CREDS)) as server:
        creds = _minter(server).mint("read", ["s3://b/k"], Deadline.after(5))

    assert creds.access_key_id == "ASIA1"
    (seen,) = server.seen
    assert (seen.method, seen.path) == ("POST", "/v1/credentials")
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
    assert not {h.lower() for h in seen.headers} & {"x-amz-security-token", "x-amz-date"}
    assert seen.body == b'{"access": "read", "prefixes": ["s3://b/k"]}'
    assert TOKEN not in repr(creds)
    assert "s" not in repr(creds).split("...")[1]


@pytest.mark.parametrize("failure", [
    Reply(500, {"error": {"code": "Internal", "message": "boom"}}),
    Reply(503, b"<html>unavailable</html>"),
    Reply(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"}),
    Reply(200, b"not json"),
])
def test_retryable_failures_are_retried_until_success(failure: Reply) -> None:
    with scripted(failure, failure, Reply(200, CREDS)) as server:
        creds = _minter(server).mint("write", ["s3://o/p/"], Deadline.after(10))

    assert creds.session_token == "t"
    assert len(server.seen) == 3


def test_a_slow_minter_is_abandoned_and_retried() -> None:
    with scripted(Reply(hang=True), Reply(200, CREDS)) as server:
        creds = _minter(server, request_timeout=0.3).mint("read", ["s3://b/k"],
                                                          Deadline.after(10))

    assert creds.access_key_id == "ASIA1"


def test_exhausted_retries_give_credentials_unavailable_which_is_retryable() -> None:
    with scripted(Reply(502, {"message": "bad gateway"})) as server, \
            pytest.raises(CredentialsUnavailableError, match="bad gateway") as caught:
        _minter(server, max_attempts=3).mint("read", ["s3://b/k"], Deadline.after(10))

    assert caught.value.is_retryable
    assert len(server.seen) == 3


def test_the_budget_bounds_the_retries() -> None:
    with scripted(Reply(hang=True)) as server, pytest.raises(CredentialsUnavailableError):
        _minter(server, request_timeout=5).mint("read", ["s3://b/k"], Deadline.after(0.5))

    assert len(server.seen) == 1


def test_401_is_token_rejected_and_403_access_denied() -> None:
    with scripted(Reply(401, {"error": {"message": "bad signature"}}),
                  Reply(403, {"error": {"message": "prefix outside token"}})) as server:
        with pytest.raises(TokenRejectedError, match="bad signature"):
            _minter(server).mint("read", ["s3://b/k"], Deadline.after(5))
        with pytest.raises(AccessDeniedError, match="prefix outside token") as denied:
            _minter(server).mint("write", ["s3://x/y/"], Deadline.after(5))

    assert not denied.value.is_retryable


def test_a_minter_answer_without_credentials_is_unavailable() -> None:
    with scripted(Reply(200, {"access_key_id": "only"})) as server, \
            pytest.raises(CredentialsUnavailableError, match="secret_access_key"):
        _minter(server).mint("read", ["s3://b/k"], Deadline.after(5))


def test_a_query_returns_columns_rows_and_truncation() -> None:
    with scripted(Reply(200, ROWS)) as server:
        got = _query(server).run("n", "select 1 as n", Deadline.after(5))

    assert got == ROWS
    assert server.seen[0].body == b'{"sql": "select 1 as n", "max_rows": 10}'
    assert server.seen[0].headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(("reply", "retryable"), [
    (Reply(400, {"error": {"message": "Parser Error: syntax error at or near"}}), False),
    (Reply(403, {"error": {"message": "dataset blocks is not in the token"}}), False),
    (Reply(500, {"error": {"message": "engine crashed"}}), True),
    (Reply(200, {"rows": []}), True),
])
def test_query_failures_carry_the_services_message(reply: Reply, retryable: bool) -> None:
    with scripted(reply) as server, pytest.raises(QueryFailedError) as caught:
        _query(server, max_attempts=2).run("recent", "select 1", Deadline.after(5))

    assert caught.value.is_retryable is retryable
    if reply.status != 200:
        assert reply.body["error"]["message"] in caught.value.message
    assert "recent" in caught.value.message


def test_a_query_with_a_rejected_token_is_token_rejected() -> None:
    with scripted(Reply(401, {"error": {"message": "expired"}})) as server, \
            pytest.raises(TokenRejectedError, match="expired"):
        _query(server).run("q", "select 1", Deadline.after(5))
