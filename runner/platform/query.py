"""Client of the Query Service, and the task's input queries run before the invocation.

Contract (docs/contract.md#query-service, contracts/query-service.openapi.yaml):
`POST {query}/v1/query` `{"sql": "...", "max_rows": N}` with the task's capability token as bearer →
`{"columns": [{"name", "type"}], "rows": [[...]], "truncated": bool}`; 400 SQL error,
403 dataset outside the token, 5xx retried.

The results reach the function inside its event, under `INPUTS_KEY`:
`{"trace_inputs": {"queries": {"<name>": {"columns": [...], "rows": [...], "truncated": b}}}}`.
"""

from __future__ import annotations

from typing import Any

from runner.deadline import Deadline
from runner.errors import QueryFailedError, TokenRejectedError
from runner.platform._http import ServiceClient, ServiceUnavailable
from runner.steps import NEVER, Cancellation

__all__ = ["INPUTS_KEY", "TRUNCATED_MESSAGE", "QueryClient"]

#: The key of the event object under which input query results are delivered.
INPUTS_KEY = "trace_inputs"
#: The runner's warning (with the `query` and the `rows` kept) for a result cut short at the row
#: or byte limit: delivered flagged `truncated`, which a function may well not look at.
TRUNCATED_MESSAGE = "input query result truncated"


class QueryClient:
    """Runs SQL through the Query Service with one task's token."""

    def __init__(self, client: ServiceClient, *, max_rows: int) -> None:
        self._client = client
        self._max_rows = max_rows

    def run(self, name: str, sql: str, deadline: Deadline,
            cancellation: Cancellation = NEVER) -> dict[str, Any]:
        """The result of one named query, or `Platform.QueryFailed` with the service's message."""
        try:
            reply = self._client.post("/v1/query", {"sql": sql, "max_rows": self._max_rows},
                                      deadline, cancellation)
        except ServiceUnavailable as e:
            raise QueryFailedError(f"query {name!r}: Query Service unavailable: {e}",
                                   retryable=True) from e
        if reply.status == 401:
            raise TokenRejectedError(f"Query Service rejected the token: {reply.message()}")
        body = reply.body
        if reply.status != 200:
            raise QueryFailedError(f"query {name!r} failed (HTTP {reply.status}): "
                                   f"{reply.message()}", retryable=False)
        if not (isinstance(body, dict) and {"columns", "rows", "truncated"} <= body.keys()):
            raise QueryFailedError(f"query {name!r}: the Query Service's answer is malformed",
                                   retryable=True)
        return {"columns": body["columns"], "rows": body["rows"],
                "truncated": bool(body["truncated"])}
