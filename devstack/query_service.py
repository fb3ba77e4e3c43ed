"""The local Query Service: `POST /v1/query` (`contracts/query-service.openapi.yaml`).

The bearer token is the only credential; its `datasets` claim is the whole of what the query may
see. The SQL itself runs in `SqlSandbox`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from devstack._http import (
    ApiRequest,
    JsonApiServer,
    JsonObject,
    invalid_body,
)
from devstack.sql_sandbox import SqlSandbox
from devstack.tokens import TokenVerifier

QUERY_PATH = "/v1/query"
DEFAULT_MAX_ROWS = 1_000
#: The most rows one response carries, whatever the request asks for.
SERVER_MAX_ROWS = 10_000
MAX_SQL_CHARS = 100_000
#: Queries run at once (each has its own DuckDB with its own memory limit); more get a 429.
MAX_CONCURRENT_QUERIES = 8


class QueryRequest(BaseModel):
    """The body of `POST /v1/query`."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    sql: Annotated[str, StringConstraints(min_length=1, max_length=MAX_SQL_CHARS)]
    max_rows: Annotated[int, Field(ge=1)] = DEFAULT_MAX_ROWS


class QueryService(JsonApiServer):
    """Runs a read-only query over the datasets the caller's token lists."""

    def __init__(self, verifier: TokenVerifier, sandbox: SqlSandbox, *, port: int = 0,
                 max_in_flight: int = MAX_CONCURRENT_QUERIES) -> None:
        self._verifier = verifier
        self._sandbox = sandbox
        super().__init__("query-service", {QUERY_PATH: self._query}, port=port,
                         max_in_flight=max_in_flight)

    def _query(self, request: ApiRequest) -> JsonObject:
        claims = self._verifier.claims_of(request)
        try:
            query = QueryRequest.model_validate(request.body)
        except ValidationError as e:
            raise invalid_body(e) from e
        return self._sandbox.run(query.sql, allowed=claims.datasets,
                                 max_rows=min(query.max_rows, SERVER_MAX_ROWS))
