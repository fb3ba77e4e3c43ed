"""The Query Service and the token issuer over real HTTP on loopback, checked against contracts/.

(The credential minter needs the embedded S3: test_devstack_minter.py.)
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import urllib3

from devstack import datasets
from devstack._http import ApiRequest, JsonApiServer, JsonObject
from devstack.claims import Grant, Prefixes
from devstack.contracts import Contract
from devstack.issuer_service import IssuerService
from devstack.query_service import SERVER_MAX_ROWS, QueryService
from devstack.sql_sandbox import SqlSandbox
from devstack.tokens import SigningKey, TokenIssuer

QUERY = "/v1/query"
TOKENS = "/v1/tokens"
ISSUER_KEY = "issuer-key-for-tests"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def issuer(key: SigningKey) -> TokenIssuer:
    return TokenIssuer(key)


@pytest.fixture(scope="module")
def query_service(key: SigningKey, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    database = datasets.build_database(tmp_path_factory.mktemp("samples") / "samples.duckdb")
    with QueryService(key.verifier(), SqlSandbox(database, datasets.DATASETS)) as service:
        yield service.url


@pytest.fixture(scope="module")
def issuer_service(issuer: TokenIssuer) -> Iterator[str]:
    with IssuerService(issuer, ISSUER_KEY) as service:
        yield service.url


def grant(**changes: Any) -> Grant:
    fields: dict[str, Any] = {"task_id": "task-q", "attempt": 1, "bundle_sha256": "0" * 64,
                              "datasets": ["erc20_transfers", "erc20_tokens"]}
    return Grant(**{**fields, **changes})


@pytest.fixture(scope="module")
def token(issuer: TokenIssuer) -> str:
    return issuer.issue(grant())


def post(url: str, path: str, body: Any, token: str | None,
         content_type: str = "application/json") -> urllib3.BaseHTTPResponse:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return urllib3.request("POST", url + path, body=data, headers=headers, retries=False)


def query(url: str, body: Any, token: str | None) -> tuple[int, Any]:
    """POST /v1/query; the response is checked against the contract before it is returned."""
    response = post(url, QUERY, body, token)
    payload = response.json()
    Contract.load("query-service").check_response(QUERY, "POST", response.status, payload,
                                                  dict(response.headers))
    return response.status, payload


# Query Service


def test_a_query_returns_rows_per_the_contract(query_service: str, token: str) -> None:
    status, body = query(query_service, {
        "sql": "select symbol, decimals from erc20_tokens where symbol like 'US%' order by 1",
        "max_rows": 10}, token)

    assert status == 200
    assert body == {"columns": [{"name": "symbol", "type": "VARCHAR"},
                                {"name": "decimals", "type": "INTEGER"}],
                    "rows": [["USDC", 6], ["USDT", 6]], "truncated": False}


def test_max_rows_caps_and_truncated_says_so(query_service: str, token: str) -> None:
    status, body = query(query_service, {"sql": "select * from erc20_transfers", "max_rows": 7},
                         token)

    assert status == 200
    assert (len(body["rows"]), body["truncated"]) == (7, True)
    assert [column["name"] for column in body["columns"]][4:7] == ["from", "to", "value"]


def test_max_rows_defaults_and_the_server_maximum_applies(query_service: str, token: str) -> None:
    _, default = query(query_service, {"sql": "select * from range(5000)"}, token)
    _, huge = query(query_service, {"sql": "select * from range(50000)", "max_rows": 10**9}, token)

    assert (len(default["rows"]), default["truncated"]) == (1000, True)
    assert (len(huge["rows"]), huge["truncated"]) == (SERVER_MAX_ROWS, True)


@pytest.mark.parametrize(("sql", "code"), [
    ("COPY (SELECT 1) TO '/tmp/devstack-http-owned.csv'", "statement_not_allowed"),
    ("ATTACH '/tmp/devstack-http-evil.duckdb' AS evil", "statement_not_allowed"),
    ("INSTALL httpfs", "statement_not_allowed"),
    ("PRAGMA database_list", "statement_not_allowed"),
    ("SELECT 1; DROP TABLE erc20_transfers", "statement_not_allowed"),
    ("SELECT * FROM read_csv('/etc/passwd')", "operation_not_permitted"),
    ("SELECT * FROM glob('/*')", "operation_not_permitted"),
    ("SELEC 1", "invalid_sql"),
    ("SELECT * FROM no_such_table", "invalid_sql"),
])
def test_refused_sql_is_a_400_with_its_code(query_service: str, token: str, sql: str,
                                            code: str) -> None:
    status, body = query(query_service, {"sql": sql}, token)

    assert (status, body["error"]["code"]) == (400, code)
    assert not list(Path("/tmp").glob("devstack-http-*"))


def test_a_dataset_outside_the_token_is_a_403(query_service: str, token: str) -> None:
    status, body = query(query_service, {"sql": "select count(*) from blocks"}, token)

    assert (status, body["error"]["code"]) == (403, "dataset_not_allowed")


@pytest.mark.parametrize("body", [
    {},
    {"sql": ""},
    {"sql": 42},
    {"sql": "select 1", "max_rows": 0},
    {"sql": "select 1", "max_rows": "10"},
    {"sql": "select 1", "extra": True},
    ["select 1"],
])
def test_a_body_outside_the_contract_is_a_400(query_service: str, token: str, body: Any) -> None:
    status, reply = query(query_service, body, token)

    assert (status, reply["error"]["code"]) == (400, "invalid_request")


@pytest.mark.parametrize("data", [b"{not json", b"\xff\xfe", b"[" * 200_000 + b"]" * 200_000])
def test_a_body_that_is_not_json_is_a_400(query_service: str, token: str, data: bytes) -> None:
    response = post(query_service, QUERY, data, token)

    assert (response.status, response.json()["error"]["code"]) == (400, "invalid_request")


@pytest.mark.parametrize("authorization", [None, "Basic dXNlcjpwYXNz", "Bearer", "Bearer x.y.z"])
def test_without_a_valid_bearer_token_it_is_a_401(query_service: str,
                                                  authorization: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = urllib3.request("POST", query_service + QUERY, json={"sql": "select 1"},
                               headers=headers, retries=False)

    Contract.load("query-service").check_response(QUERY, "POST", response.status,
                                                  response.json(), dict(response.headers))
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_wrong_path_and_method_and_media_type(query_service: str, token: str) -> None:
    missing = post(query_service, "/v1/nothing", {"sql": "select 1"}, token)
    wrong_method = urllib3.request("GET", query_service + QUERY, retries=False)
    text = post(query_service, QUERY, b"select 1", token, content_type="text/plain")

    assert (missing.status, missing.json()["error"]["code"]) == (404, "not_found")
    assert (wrong_method.status, wrong_method.headers["Allow"]) == (405, "POST")
    assert (text.status, text.json()["error"]["code"]) == (415, "unsupported_media_type")
    Contract.load("query-service").check_response(QUERY, "POST", 415, text.json())


def test_a_body_without_length_or_over_the_limit_is_refused(query_service: str,
                                                            token: str) -> None:
    address = urlsplit(query_service)
    connection = http.client.HTTPConnection(address.hostname or "", address.port)
    try:
        connection.putrequest("POST", QUERY)
        connection.putheader("Authorization", f"Bearer {token}")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders(b"5\r\nhello\r\n0\r\n\r\n")
        chunked = connection.getresponse()
        chunked_body = json.loads(chunked.read())
    finally:
        connection.close()
    oversized = post(query_service, QUERY, {"sql": "x" * (2 * 1024 * 1024)}, token)

    assert (chunked.status, chunked_body["error"]["code"]) == (411, "length_required")
    assert (oversized.status, oversized.json()["error"]["code"]) == (413, "payload_too_large")
    Contract.load("query-service").check_response(QUERY, "POST", 413, oversized.json())


def test_one_connection_carries_several_requests(query_service: str, token: str) -> None:
    address = urlsplit(query_service)
    connection = http.client.HTTPConnection(address.hostname or "", address.port)
    try:
        statuses = []
        for sql in ("select 1", "select * from blocks", "select 2"):
            body = json.dumps({"sql": sql})
            connection.request("POST", QUERY, body, {"Authorization": f"Bearer {token}",
                                                     "Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
    finally:
        connection.close()

    assert statuses == [200, 403, 200]


def test_concurrent_requests_with_different_tokens(query_service: str,
                                                   issuer: TokenIssuer) -> None:
    tokens = {name: issuer.issue(grant(datasets=[name])) for name in datasets.DATASETS}
    expected = {"erc20_tokens": 6, "blocks": 1000, "erc20_transfers": 5000}

    def one(index: int) -> tuple[int, int, int]:
        name = sorted(tokens)[index % len(tokens)]
        sql = f"select count(*) from {name}"  # noqa: S608 - names from our own constant
        status, body = query(query_service, {"sql": sql}, tokens[name])
        other = sorted(tokens)[(index + 1) % len(tokens)]
        sql = f"select count(*) from {other}"  # noqa: S608 - names from our own constant
        refused, _ = query(query_service, {"sql": sql}, tokens[name])
        return status, body["rows"][0][0] - expected[name], refused

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(one, range(18)))

    assert set(results) == {(200, 0, 403)}


# The shared HTTP layer: the replies no service produces on demand.


def test_requests_beyond_the_in_flight_limit_get_a_429() -> None:
    entered, release = threading.Event(), threading.Event()

    def hold(request: ApiRequest) -> JsonObject:
        entered.set()
        release.wait()
        return {}

    with (JsonApiServer("held", {QUERY: hold}, max_in_flight=1) as server,
          ThreadPoolExecutor(max_workers=1) as pool):
        first = pool.submit(post, server.url, QUERY, {"sql": "select 1"}, "t")
        assert entered.wait(timeout=30)
        second = post(server.url, QUERY, {"sql": "select 1"}, "t")
        release.set()
        assert first.result().status == 200

    assert second.status == 429
    assert second.headers["Retry-After"] == "1"
    for name in ("query-service", "credential-minter"):
        path = QUERY if name == "query-service" else "/v1/credentials"
        Contract.load(name).check_response(path, "POST", 429, second.json(),
                                           dict(second.headers))


def test_an_unexpected_failure_is_a_500_without_details(caplog: pytest.LogCaptureFixture) -> None:
    def crash(request: ApiRequest) -> JsonObject:
        raise RuntimeError("secret internal detail")

    with JsonApiServer("crashing", {QUERY: crash}) as server:
        response = post(server.url, QUERY, {"sql": "select 1"}, "t")

    assert response.status == 500
    assert response.json() == {"error": {"code": "internal", "message": "internal error"}}
    assert "secret internal detail" in caplog.text
    Contract.load("query-service").check_response(QUERY, "POST", 500, response.json())


# Token issuer


def test_the_issuer_signs_a_token_per_the_contract(issuer_service: str, key: SigningKey) -> None:
    body = grant(prefixes=Prefixes(read=["s3://udf-bundles/acme/fn.zip"],
                                   write=["s3://udf-outputs/acme/task-q/"])).model_dump()
    before = int(time.time())

    response = post(issuer_service, TOKENS, body, ISSUER_KEY)

    assert response.status == 200
    issued = response.json()
    Contract.load("token-issuer").check_response(TOKENS, "POST", 200, issued)
    claims = key.verifier().verify(issued["token"])
    assert claims.model_dump(mode="json") == issued["claims"]
    assert claims.prefixes.write == ["s3://udf-outputs/acme/task-q/"]
    assert claims.iat >= before


@pytest.mark.parametrize("credential", [None, "wrong-key", ISSUER_KEY + "x"])
def test_the_issuer_needs_its_key(issuer_service: str, credential: str | None) -> None:
    response = post(issuer_service, TOKENS, grant().model_dump(), credential)

    assert response.status == 401
    Contract.load("token-issuer").check_response(TOKENS, "POST", 401, response.json(),
                                                 dict(response.headers))


@pytest.mark.parametrize("changes", [
    {"attempt": 0},
    {"prefixes": {"read": ["s3://udf-bundles/../x"], "write": []}},
    {"ttl_seconds": 10**9},
    {"unknown": 1},
])
def test_the_issuer_refuses_an_invalid_grant(issuer_service: str,
                                             changes: dict[str, Any]) -> None:
    response = post(issuer_service, TOKENS, {**grant().model_dump(), **changes}, ISSUER_KEY)

    assert (response.status, response.json()["error"]["code"]) == (400, "invalid_request")
    Contract.load("token-issuer").check_response(TOKENS, "POST", 400, response.json())
