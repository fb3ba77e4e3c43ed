"""DuckDB values as JSON: decided by the column's type, and always valid JSON."""

from __future__ import annotations

import json
from typing import Any

import duckdb
import pytest

from devstack.sql_values import converter


def convert(sql: str) -> list[Any]:
    with duckdb.connect(":memory:") as con:
        cursor = con.execute(sql)
        description = cursor.description or []
        row = cursor.fetchone()
    assert row is not None
    return [converter(column[1])(value) for column, value in zip(description, row, strict=True)]


@pytest.mark.parametrize(("expression", "expected"), [
    ("42::INTEGER", 42),
    ("9007199254740993::BIGINT", 9007199254740993),
    ("170141183460469231731687303715884105727::HUGEINT",
     "170141183460469231731687303715884105727"),
    ("18446744073709551615::UBIGINT", "18446744073709551615"),
    ("7::UHUGEINT", "7"),
    ("'12.50'::DECIMAL(10,2)", "12.50"),
    ("99494343806788000000000000::DECIMAL(38,0)", "99494343806788000000000000"),
    ("1.5::DOUBLE", 1.5),
    ("'nan'::DOUBLE", "NaN"),
    ("'-inf'::FLOAT", "-Infinity"),
    ("true", True),
    ("NULL::VARCHAR", None),
    ("DATE '2024-01-15'", "2024-01-15"),
    ("TIMESTAMP '2024-01-15 00:00:12.5'", "2024-01-15T00:00:12.500000"),
    ("TIME '12:30:00'", "12:30:00"),
    ("TIMESTAMPTZ '2024-01-15 00:00:00+02'", "2024-01-14T22:00:00+00:00"),
    ("INTERVAL '1 day 3 hours 0.25 seconds'", "P1DT10800.25S"),
    ("-INTERVAL '2 seconds'", "-P0DT2S"),
    ("'\\x00\\xff'::BLOB", "AP8="),
    ("'00000000-0000-0000-0000-00000000002a'::UUID", "00000000-0000-0000-0000-00000000002a"),
    ("[1, 2, NULL]", [1, 2, None]),
    ("[170141183460469231731687303715884105727::HUGEINT]",
     ["170141183460469231731687303715884105727"]),
    ("{'a': 1, 'b': [1.5::DECIMAL(3,1)]}", {"a": 1, "b": ["1.5"]}),
    ("MAP {1: 'one'}", {"1": "one"}),
    ("[1, 2]::INTEGER[2]", [1, 2]),
    ("'x'::ENUM('x', 'y')", "x"),
])
def test_values(expression: str, expected: Any) -> None:
    value = convert(f"select {expression}")[0]

    assert value == expected
    json.dumps(value, allow_nan=False)


def test_every_type_duckdb_has_becomes_valid_json() -> None:
    with duckdb.connect(":memory:") as con:
        cursor = con.execute("select * from test_all_types()")
        converters = [converter(column[1]) for column in cursor.description or []]
        rows = cursor.fetchall()

    for row in rows:
        json.dumps([convert_one(value) for convert_one, value in zip(converters, row, strict=True)],
                   allow_nan=False)
