"""The OpenAPI documents in contracts/ are valid OpenAPI 3.1 and agree with the code."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_document
from openapi_spec_validator.readers import read_from_filename
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from devstack import datasets
from devstack.contracts import CLAIMS_SCHEMA, CONTRACTS_DIR, DOCUMENTS, Contract, ValidationError
from devstack.query_service import MAX_SQL_CHARS


@pytest.mark.parametrize("name", DOCUMENTS)
def test_each_document_is_valid_openapi_3_1(name: str) -> None:
    contract = Contract.load(name)

    assert contract.document["openapi"] == "3.1.0"


def test_the_claims_schema_is_valid_json_schema() -> None:
    Draft202012Validator.check_schema(json.loads((CONTRACTS_DIR / CLAIMS_SCHEMA).read_text()))


def test_the_validator_rejects_a_broken_document() -> None:
    document, _ = read_from_filename(str(CONTRACTS_DIR / "query-service.openapi.yaml"))
    broken: dict[str, Any] = {**document, "paths": {"/v1/query": {"post": {"responses": 200}}}}

    with pytest.raises(OpenAPIValidationError, match="200"):
        validate_document(broken)


def test_the_query_contract_matches_the_service() -> None:
    contract = Contract.load("query-service")
    request = contract.document["components"]["schemas"]["QueryRequest"]

    assert request["properties"]["sql"]["maxLength"] == MAX_SQL_CHARS
    assert all(name in contract.document["info"]["description"] for name in datasets.DATASETS)


@pytest.mark.parametrize(("name", "body"), [
    ("query-service", {"sql": "select 1", "max_rows": 0}),
    ("query-service", {"sql": "", "max_rows": 1}),
    ("query-service", {"query": "select 1"}),
    ("credential-minter", {"access": "admin", "prefixes": ["s3://udf-outputs/a/"]}),
    ("credential-minter", {"access": "read", "prefixes": []}),
    ("credential-minter", {"access": "read", "prefixes": ["s3://udf-outputs/a/*"]}),
])
def test_requests_outside_the_contract_are_caught(name: str, body: dict[str, Any]) -> None:
    path = "/v1/query" if name == "query-service" else "/v1/credentials"

    with pytest.raises(ValidationError):
        Contract.load(name).check_request(path, "POST", body)


def test_undeclared_statuses_and_missing_headers_are_caught() -> None:
    contract = Contract.load("credential-minter")
    error = {"error": {"code": "rate_limited", "message": "busy"}}

    with pytest.raises(ValidationError, match="declares no 418"):
        contract.check_response("/v1/credentials", "POST", 418, error)
    with pytest.raises(ValidationError, match="Retry-After"):
        contract.check_response("/v1/credentials", "POST", 429, error, {})
    contract.check_response("/v1/credentials", "POST", 429, error, {"retry-after": "1"})
