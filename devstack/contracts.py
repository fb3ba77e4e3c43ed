"""The services' HTTP contracts (`contracts/*.openapi.yaml`), loaded to check real traffic.

Tests of the local services and of the runner's clients use `Contract` to check that a request
body, or a response (status, declared headers, JSON body), is what the contract says. It reads
the documents from the source tree, next to this package: a development aid, not runtime code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import ValidationError
from openapi_schema_validator import OAS31Validator, oas31_format_checker
from openapi_spec_validator import validate as validate_document
from openapi_spec_validator.readers import read_from_filename
from referencing import Registry
from referencing.jsonschema import DRAFT202012

CONTRACTS_DIR = Path(__file__).resolve().parent.parent / "contracts"
CLAIMS_SCHEMA = "capability-token.schema.json"
DOCUMENTS = ("credential-minter", "query-service", "token-issuer")

__all__ = ["CLAIMS_SCHEMA", "CONTRACTS_DIR", "DOCUMENTS", "Contract", "ValidationError"]


@dataclass(frozen=True)
class Contract:
    """One OpenAPI document, validated, with its schemas ready to check instances against."""

    name: str
    document: Mapping[str, Any]
    uri: str
    registry: Registry[Any]

    @classmethod
    @cache
    def load(cls, name: str) -> Contract:
        """`contracts/<name>.openapi.yaml`, checked against the OpenAPI 3.1 specification."""
        document, uri = read_from_filename(str(CONTRACTS_DIR / f"{name}.openapi.yaml"))
        validate_document(document, base_uri=uri)
        claims_path = CONTRACTS_DIR / CLAIMS_SCHEMA
        registry: Registry[Any] = Registry().with_resources([
            (uri, DRAFT202012.create_resource(document)),
            (claims_path.as_uri(), DRAFT202012.create_resource(json.loads(
                claims_path.read_text()))),
        ])
        return cls(name, document, uri, registry)

    def check_schema(self, schema_name: str, instance: Any) -> None:
        """Check `instance` against `#/components/schemas/<schema_name>`."""
        self._check_at(f"/components/schemas/{_escape(schema_name)}", instance)

    def check_request(self, path: str, method: str, body: Any) -> None:
        """Check a JSON request body against the operation's request schema."""
        self._operation(path, method)
        self._check_at(f"{_operation_pointer(path, method)}/requestBody/content/"
                       "application~1json/schema", body)

    def check_response(self, path: str, method: str, status: int, body: Any,
                       headers: Mapping[str, str] | None = None) -> None:
        """Check a response: its status is declared, its declared headers are present (names
        compared case-insensitively), and its JSON body matches the schema."""
        responses = self._operation(path, method)["responses"]
        if str(status) not in responses:
            raise ValidationError(f"{self.name}: {method} {path} declares no {status} response")
        declared = responses[str(status)]
        pointer = (declared["$ref"].removeprefix("#") if "$ref" in declared
                   else f"{_operation_pointer(path, method)}/responses/{status}")
        response = self.registry.resolver(self.uri).lookup(f"#{pointer}").contents
        present = {name.lower() for name in (headers or {})}
        for name in response.get("headers", {}):
            if name.lower() not in present:
                raise ValidationError(f"{self.name}: a {status} response needs header {name}")
        self._check_at(f"{pointer}/content/application~1json/schema", body)

    def _operation(self, path: str, method: str) -> Mapping[str, Any]:
        try:
            operation: Mapping[str, Any] = self.document["paths"][path][method.lower()]
        except KeyError as e:
            raise ValidationError(f"{self.name}: no operation {method} {path}") from e
        return operation

    def _check_at(self, pointer: str, instance: Any) -> None:
        # By reference into the document, so the schema's own `$ref`s resolve against it.
        validator = OAS31Validator({"$ref": f"{self.uri}#{pointer}"}, registry=self.registry,
                                   format_checker=oas31_format_checker)
        validator.validate(instance)


def _operation_pointer(path: str, method: str) -> str:
    return f"/paths/{_escape(path)}/{method.lower()}"


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")
