"""Read-only SQL on DuckDB: the token's datasets only, one SELECT only, nothing outside."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest

from devstack import datasets
from devstack._http import ApiError
from devstack.sql_sandbox import SqlSandbox

ALL = sorted(datasets.DATASETS)
TRANSFERS = ["erc20_transfers"]


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return datasets.build_database(tmp_path_factory.mktemp("samples") / "samples.duckdb")


@pytest.fixture(scope="module")
def sandbox(database: Path) -> SqlSandbox:
    return SqlSandbox(database, datasets.DATASETS)


def refusal(sandbox: SqlSandbox, sql: str, allowed: list[str] | None = None) -> ApiError:
    with pytest.raises(ApiError) as refused:
        sandbox.run(sql, allowed=TRANSFERS if allowed is None else allowed, max_rows=10)
    return refused.value


def test_a_select_returns_columns_rows_and_truncated(sandbox: SqlSandbox) -> None:
    result = sandbox.run("select symbol, decimals from erc20_tokens order by symbol",
                         allowed=["erc20_tokens"], max_rows=10)

    assert result == {
        "columns": [{"name": "symbol", "type": "VARCHAR"}, {"name": "decimals", "type": "INTEGER"}],
        "rows": [["DAI", 18], ["LINK", 18], ["UNI", 18], ["USDC", 6], ["USDT", 6], ["WETH", 18]],
        "truncated": False,
    }


def test_the_sample_data_is_the_same_everywhere(sandbox: SqlSandbox) -> None:
    transfers = sandbox.run(
        "select count(*), sum(value), min(block_number), max(block_number), "
        "md5(string_agg(tx_hash || \"from\" || \"to\" || value::varchar, ',' "
        "order by block_number, log_index)) from erc20_transfers",
        allowed=TRANSFERS, max_rows=1)
    blocks = sandbox.run(
        "select count(*), md5(string_agg(hash || miner || gas_used::varchar, ',' order by number))"
        " from blocks", allowed=["blocks"], max_rows=1)

    assert transfers["rows"] == [[5000, "767118008155575113052300621", 19000000, 19000999,
                                  "fe9d800a70333cc17fd86d764b168010"]]
    assert blocks["rows"] == [[1000, "6f1da5b45515dbfe40d208039fc1d963"]]


def test_transfer_rows_have_the_documented_shape(sandbox: SqlSandbox) -> None:
    result = sandbox.run("select * from erc20_transfers order by block_number, log_index",
                         allowed=TRANSFERS, max_rows=1)

    assert [(c["name"], c["type"]) for c in result["columns"]] == [
        ("block_number", "BIGINT"), ("tx_hash", "VARCHAR"), ("log_index", "INTEGER"),
        ("token", "VARCHAR"), ("from", "VARCHAR"), ("to", "VARCHAR"),
        ("value", "DECIMAL(38,0)"), ("timestamp", "TIMESTAMP")]
    block, tx_hash, log_index, token, sender, receiver, value, timestamp = result["rows"][0]
    assert (block, log_index, timestamp) == (19000000, 0, "2024-01-15T00:00:00")
    assert len(tx_hash) == 66
    assert len(sender) == len(receiver) == len(token) == 42
    assert isinstance(value, str)
    assert value.isdigit()


@pytest.mark.parametrize(("max_rows", "count", "truncated"), [
    (3, 3, True), (5, 5, True), (6, 6, False), (100, 6, False)])
def test_rows_are_capped_by_max_rows(sandbox: SqlSandbox, max_rows: int, count: int,
                                     truncated: bool) -> None:
    result = sandbox.run("select * from erc20_tokens", allowed=["erc20_tokens"],
                         max_rows=max_rows)

    assert (len(result["rows"]), result["truncated"]) == (count, truncated)


def test_rows_are_capped_by_bytes(database: Path) -> None:
    small = SqlSandbox(database, datasets.DATASETS, max_result_bytes=1000)

    result = small.run("select * from erc20_transfers", allowed=TRANSFERS, max_rows=1000)

    assert 0 < len(result["rows"]) < 10
    assert result["truncated"] is True
    with pytest.raises(ApiError) as refused:
        small.run("select repeat('x', 2000)", allowed=[], max_rows=1)
    assert refused.value.code == "result_too_large"


def test_an_endless_query_is_interrupted(database: Path) -> None:
    impatient = SqlSandbox(database, datasets.DATASETS, timeout_seconds=0.5)

    error = refusal(impatient, "with recursive r(n) as (select 1 union all select n + 1 from r) "
                             "select count(*) from r")

    assert (error.status, error.code) == (HTTPStatus.BAD_REQUEST, "query_timeout")


def test_a_query_over_the_memory_limit_fails(database: Path) -> None:
    tight = SqlSandbox(database, datasets.DATASETS, memory_limit="32MB")

    with pytest.raises(ApiError) as refused:
        tight.run("select count(*) from (select range, md5(range::varchar) as h "
                  "from range(5000000) order by h)", allowed=[], max_rows=1)
    assert refused.value.code == "invalid_sql"
    assert "Out of Memory" in refused.value.message


@pytest.mark.parametrize("sql", [
    "select * from blocks",
    "select * from BLOCKS",
    'select * from main."blocks"',
    "select * from erc20_transfers t join blocks b on b.number = t.block_number",
    "select * from erc20_transfers where block_number in (select number from blocks)",
    "select * from query_table('blocks')",
])
def test_a_dataset_outside_the_token_is_forbidden(sandbox: SqlSandbox, sql: str) -> None:
    error = refusal(sandbox, sql)

    assert (error.status, error.code) == (HTTPStatus.FORBIDDEN, "dataset_not_allowed")
    assert "blocks" in error.message


def test_only_the_tokens_datasets_exist(sandbox: SqlSandbox) -> None:
    tables = sandbox.run("select table_name from information_schema.tables order by 1",
                         allowed=TRANSFERS, max_rows=100)
    databases = sandbox.run("select database_name from duckdb_databases() order by 1",
                            allowed=TRANSFERS, max_rows=100)

    assert tables["rows"] == [["erc20_transfers"]]
    assert ["samples"] not in databases["rows"]


def test_a_cte_may_reuse_a_dataset_name(sandbox: SqlSandbox) -> None:
    result = sandbox.run("with blocks as (select 1 as n) select n from blocks",
                         allowed=TRANSFERS, max_rows=1)

    assert result["rows"] == [[1]]


def test_an_unknown_table_is_a_sql_error(sandbox: SqlSandbox) -> None:
    error = refusal(sandbox, "select * from no_such_table")

    assert (error.status, error.code) == (HTTPStatus.BAD_REQUEST, "invalid_sql")


HOSTILE: list[tuple[str, str]] = [
    # Not a single SELECT: refused before execution, by DuckDB's own parser.
    ("COPY (SELECT 1) TO '/tmp/devstack-owned.csv'", "statement_not_allowed"),
    ("COPY erc20_transfers TO '/tmp/devstack-owned.parquet' (FORMAT parquet)",
     "statement_not_allowed"),
    ("COPY erc20_transfers FROM '/etc/passwd'", "statement_not_allowed"),
    ("ATTACH '/tmp/devstack-evil.duckdb' AS evil", "statement_not_allowed"),
    ("ATTACH ':memory:' AS m", "statement_not_allowed"),
    ("DETACH memory", "statement_not_allowed"),
    ("USE system", "statement_not_allowed"),
    ("INSTALL httpfs", "statement_not_allowed"),
    ("FORCE INSTALL httpfs FROM 'http://127.0.0.1:1'", "statement_not_allowed"),
    ("LOAD httpfs", "statement_not_allowed"),
    ("LOAD '/tmp/evil.duckdb_extension'", "statement_not_allowed"),
    ("PRAGMA database_list", "statement_not_allowed"),
    ("PRAGMA enable_profiling", "statement_not_allowed"),
    ("SET enable_external_access = true", "statement_not_allowed"),
    ("SET lock_configuration = false", "statement_not_allowed"),
    ("RESET enable_external_access", "statement_not_allowed"),
    ("CALL pragma_version()", "statement_not_allowed"),
    ("EXPORT DATABASE '/tmp/devstack-export'", "statement_not_allowed"),
    ("IMPORT DATABASE '/tmp/devstack-export'", "statement_not_allowed"),
    ("CREATE TABLE t AS SELECT 1", "statement_not_allowed"),
    ("CREATE OR REPLACE VIEW erc20_transfers AS SELECT 1 AS x", "statement_not_allowed"),
    ("CREATE MACRO evil() AS 1", "statement_not_allowed"),
    ("CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')", "statement_not_allowed"),
    ("DROP TABLE erc20_transfers", "statement_not_allowed"),
    ("INSERT INTO erc20_transfers SELECT * FROM erc20_transfers", "statement_not_allowed"),
    ("WITH x AS (SELECT 1) INSERT INTO erc20_transfers SELECT * FROM erc20_transfers",
     "statement_not_allowed"),
    ("UPDATE erc20_transfers SET value = 0", "statement_not_allowed"),
    ("DELETE FROM erc20_transfers", "statement_not_allowed"),
    ("ALTER TABLE erc20_transfers RENAME TO x", "statement_not_allowed"),
    ("BEGIN TRANSACTION", "statement_not_allowed"),
    ("CHECKPOINT", "statement_not_allowed"),
    ("VACUUM", "statement_not_allowed"),
    ("EXPLAIN SELECT 1", "statement_not_allowed"),
    ("EXPLAIN ANALYZE SELECT 1", "statement_not_allowed"),
    ("SELECT 1; DROP TABLE erc20_transfers", "statement_not_allowed"),
    ("SELECT 1; SELECT 2", "statement_not_allowed"),
    ("SELECT 1;;COPY (SELECT 1) TO '/tmp/devstack-owned.csv'", "statement_not_allowed"),
    ("", "statement_not_allowed"),
    ("-- nothing but a comment", "statement_not_allowed"),
    # A SELECT that would touch files, the network or extensions: refused by DuckDB's settings.
    ("SELECT * FROM read_csv('/etc/passwd')", "operation_not_permitted"),
    ("SELECT * FROM read_csv_auto('/etc/passwd')", "operation_not_permitted"),
    ("SELECT * FROM read_text('/etc/passwd')", "operation_not_permitted"),
    ("SELECT * FROM read_blob('/etc/shadow')", "operation_not_permitted"),
    ("SELECT * FROM read_json('/etc/hosts')", "operation_not_permitted"),
    ("SELECT * FROM read_parquet('/etc/passwd')", "operation_not_permitted"),
    ("SELECT * FROM parquet_metadata('/etc/passwd')", "operation_not_permitted"),
    ("SELECT * FROM sniff_csv('/etc/passwd')", "operation_not_permitted"),
    ("SELECT * FROM glob('/etc/*')", "operation_not_permitted"),
    ("SELECT * FROM '/etc/hosts.csv'", "operation_not_permitted"),
    ("SELECT * FROM read_csv('http://127.0.0.1:1/x.csv')", "operation_not_permitted"),
    ("SELECT * FROM 'https://example.com/data.parquet'", "operation_not_permitted"),
    ("SELECT * FROM duckdb_secrets()", "operation_not_permitted"),
    # Not there at all: no shell helpers, no extensions to autoload, no nested statements.
    ("SELECT getenv('HOME')", "invalid_sql"),
    ("SELECT * FROM '/etc/passwd'", "invalid_sql"),  # no replacement scan without file access
    ("SELECT * FROM sqlite_scan('/tmp/x.db', 't')", "invalid_sql"),
    ("SELECT * FROM query('CREATE TABLE x AS SELECT 1')", "invalid_sql"),
    ("SELECT * FROM samples.main.blocks", "dataset_not_allowed"),
]


@pytest.mark.parametrize(("sql", "code"), HOSTILE)
def test_hostile_sql_is_refused(sandbox: SqlSandbox, sql: str, code: str) -> None:
    error = refusal(sandbox, sql)

    assert error.code == code
    expected = HTTPStatus.FORBIDDEN if code == "dataset_not_allowed" else HTTPStatus.BAD_REQUEST
    assert error.status == expected


def test_hostile_sql_left_everything_as_it_was(sandbox: SqlSandbox) -> None:
    for sql, _ in HOSTILE:
        with pytest.raises(ApiError):
            sandbox.run(sql, allowed=TRANSFERS, max_rows=1)

    result = sandbox.run("select count(*), current_setting('enable_external_access'), "
                         "current_setting('lock_configuration') from erc20_transfers",
                         allowed=TRANSFERS, max_rows=1)

    assert result["rows"] == [[5000, False, True]]
    assert not any(Path("/tmp").glob("devstack-owned*"))
    assert not Path("/tmp/devstack-export").exists()


def test_a_trailing_comment_and_semicolon_are_fine(sandbox: SqlSandbox) -> None:
    result = sandbox.run("select 42 as answer; -- done", allowed=[], max_rows=1)

    assert result["rows"] == [[42]]


def test_concurrent_queries_each_see_their_own_datasets(sandbox: SqlSandbox) -> None:
    def one(index: int) -> Any:
        allowed = [ALL[index % len(ALL)]]
        sql = f"select count(*) from {allowed[0]}"  # noqa: S608 - names from our own constant
        counts = sandbox.run(sql, allowed=allowed, max_rows=1)
        tables = sandbox.run("select count(*) from information_schema.tables", allowed=allowed,
                             max_rows=1)
        return allowed[0], counts["rows"][0][0], tables["rows"][0][0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(24)))

    expected = {"erc20_tokens": 6, "blocks": 1000, "erc20_transfers": 5000}
    assert all(count == expected[name] and tables == 1 for name, count, tables in results)

