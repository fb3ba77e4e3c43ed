"""Read-only SQL over the sample datasets, one throwaway DuckDB per query.

Each query gets a fresh in-memory database holding copies of exactly the datasets its token
lists, and nothing else: the copy is made from the sample file, which is then detached, and only
then is the database locked down with DuckDB's own settings (no external access: no files,
network, ATTACH, COPY or extensions; no extension autoloading; configuration locked). So the
catalog is what enforces the token, and a query can neither see another dataset nor leave the
process. On top of that, the text must be exactly one SELECT statement (DuckDB's own parser
decides), so no DDL, DML, PRAGMA, SET, CALL or transaction control ever reaches execution; and
a query that names a known dataset outside the token is refused as such (403), not as a typo.

Each query runs with a deadline (interrupted when it passes), one thread and a memory limit,
and its result is capped by rows and by bytes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import duckdb

from devstack._http import ApiError, JsonObject
from devstack.sql_values import converter

DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_MEMORY_LIMIT = "256MB"
DEFAULT_MAX_RESULT_BYTES = 4 * 1024 * 1024

# Applied when the database is created: nothing may be fetched or loaded implicitly, and large
# intermediate results fail instead of spilling to disk.
_CREATE_CONFIG: dict[str, str | int | float | list[str]] = {
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "temp_directory": "",
    "threads": 1,
}


class SqlSandbox:
    """Runs one read-only query at a time per call, on copies of the allowed datasets."""

    def __init__(self, database: Path, datasets: Collection[str], *,
                 timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
                 memory_limit: str = DEFAULT_MEMORY_LIMIT,
                 max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES) -> None:
        self._database = database
        self._known = frozenset(datasets)
        self._timeout = timeout_seconds
        self._memory_limit = memory_limit
        self._max_result_bytes = max_result_bytes

    def run(self, sql: str, *, allowed: Collection[str], max_rows: int) -> JsonObject:
        """The result of `sql` as the Query Service returns it; ApiError when refused or failed."""
        with self._connect(allowed) as con:
            # Parsed on the query's own connection: a DuckDB connection is not thread-safe.
            query = _single_select(con, sql)
            self._check_datasets(con, query, allowed)
            with _Deadline(con, self._timeout) as deadline:
                try:
                    cursor = con.execute(query)
                    description = cursor.description or []
                    rows = cursor.fetchmany(max_rows + 1)
                except duckdb.Error as e:
                    raise _failure(e, timed_out=deadline.expired) from e
        return self._body(description, rows, max_rows)

    def _check_datasets(self, con: duckdb.DuckDBPyConnection, query: str,
                        allowed: Collection[str]) -> None:
        try:
            named = {name.lower() for name in con.get_table_names(query)}
        except duckdb.Error as e:
            raise _failure(e, timed_out=False) from e
        outside = sorted(named & (self._known - set(allowed)))
        if outside:
            raise ApiError(HTTPStatus.FORBIDDEN, "dataset_not_allowed",
                           f"the token does not allow dataset(s): {', '.join(outside)}")

    def _connect(self, allowed: Collection[str]) -> _Connection:
        con = duckdb.connect(":memory:", config={**_CREATE_CONFIG,
                                                 "memory_limit": self._memory_limit})
        try:
            path = str(self._database).replace("'", "''")
            con.execute(f"ATTACH '{path}' AS samples (READ_ONLY)")
            for name in sorted(self._known & set(allowed)):
                con.execute(f'CREATE TABLE main."{name}" AS FROM samples.main."{name}"')
            con.execute("DETACH samples")
            # Only now, with the copies made: both settings are one-way.
            con.execute("SET enable_external_access = false")
            con.execute("SET lock_configuration = true")
        except BaseException:
            con.close()
            raise
        return _Connection(con)

    def _body(self, description: list[Any], rows: list[tuple[Any, ...]],
              max_rows: int) -> JsonObject:
        converters = [converter(column[1]) for column in description]
        kept: list[list[Any]] = []
        size = 0
        truncated = len(rows) > max_rows
        for row in rows[:max_rows]:
            values = [convert(value) for convert, value in zip(converters, row, strict=True)]
            size += len(json.dumps(values, separators=(",", ":"), allow_nan=False))
            if size > self._max_result_bytes:
                truncated = True
                break
            kept.append(values)
        if rows and not kept:
            raise ApiError(HTTPStatus.BAD_REQUEST, "result_too_large",
                           f"the first row alone is over {self._max_result_bytes} bytes")
        return {
            "columns": [{"name": column[0], "type": str(column[1])} for column in description],
            "rows": kept,
            "truncated": truncated,
        }


def _single_select(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as e:
        raise _failure(e, timed_out=False) from e
    if len(statements) != 1:
        raise ApiError(HTTPStatus.BAD_REQUEST, "statement_not_allowed",
                       f"exactly one SELECT statement is allowed; got {len(statements)}")
    statement = statements[0]
    if statement.type != duckdb.StatementType.SELECT:
        raise ApiError(HTTPStatus.BAD_REQUEST, "statement_not_allowed",
                       f"only SELECT is allowed; got {statement.type.name}")
    return str(statement.query)


def _failure(error: duckdb.Error, *, timed_out: bool) -> ApiError:
    message = str(error)
    if timed_out or isinstance(error, duckdb.InterruptException):
        return ApiError(HTTPStatus.BAD_REQUEST, "query_timeout", "the query ran out of time")
    if isinstance(error, duckdb.PermissionException):
        return ApiError(HTTPStatus.BAD_REQUEST, "operation_not_permitted", message)
    return ApiError(HTTPStatus.BAD_REQUEST, "invalid_sql", message)


class _Connection:
    """A DuckDB connection closed on exit."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        return self.con

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.con.close()


class _Deadline:
    """Interrupts a connection's query when time runs out, and never after the query ended."""

    def __init__(self, con: duckdb.DuckDBPyConnection, seconds: float) -> None:
        self._con = con
        self._lock = threading.Lock()
        self._over = False
        self.expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def _expire(self) -> None:
        with self._lock:
            if not self._over:
                self.expired = True
                self._con.interrupt()

    def __enter__(self) -> Self:
        self._timer.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        with self._lock:
            self._over = True
        self._timer.cancel()
