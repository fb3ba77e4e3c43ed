"""DuckDB result values as JSON, the same way for every row of a column (its type decides).

- integers up to BIGINT are numbers; HUGEINT, UHUGEINT, UBIGINT, BIGNUM and DECIMAL are decimal
  strings, because JSON readers (JavaScript's among them) lose digits beyond 2^53;
- non-finite floats are the strings "NaN", "Infinity", "-Infinity";
- dates, times and timestamps are ISO 8601 (with an offset, converted to UTC, when the type has a
  time zone); intervals are ISO 8601 durations; values outside Python's range come as DuckDB
  prints them;
- BLOB and GEOMETRY are base64; UUID, BIT and ENUM are strings;
- LIST and ARRAY are arrays; STRUCT is an object (an array when its fields are unnamed); MAP is an
  object with string keys; UNION is its current member.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

JsonValue = Any
Converter = Callable[[Any], JsonValue]

_AS_STRING = frozenset({"hugeint", "uhugeint", "ubigint", "bignum", "decimal", "uuid", "bit",
                        "enum"})
_NESTED = frozenset({"list", "array", "struct", "map", "tuple"})


def converter(duckdb_type: Any) -> Converter:
    """A function turning values of `duckdb_type` (a `DuckDBPyType`) into JSON values."""
    kind = str(duckdb_type.id)
    if kind in _AS_STRING:
        return _nullable(str)
    if kind not in _NESTED:
        return to_json
    children: list[tuple[str, Any]] = list(duckdb_type.children)
    if kind in ("list", "array"):
        return _nullable(_sequence(converter(dict(children)["child"])))
    if kind == "map":
        return _nullable(_mapping(converter(dict(children)["value"])))
    fields = [(name, converter(child)) for name, child in children]
    return _nullable(_record(fields))


def to_json(value: Any) -> JsonValue:  # noqa: PLR0911 - one branch per Python type DuckDB returns
    """A value DuckDB returned, as JSON, by its Python type (types without a rule of their own)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _non_finite(value)
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.time):
        return _utc(value).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return _duration(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return {str(to_json(key)): to_json(item) for key, item in value.items()}
    return str(value)


def _nullable(convert: Converter) -> Converter:
    return lambda value: None if value is None else convert(value)


def _sequence(item: Converter) -> Converter:
    return lambda values: [item(value) for value in values]


def _mapping(item: Converter) -> Converter:
    return lambda values: {str(to_json(key)): item(value) for key, value in values.items()}


def _record(fields: list[tuple[str, Converter]]) -> Converter:
    def convert(value: Any) -> JsonValue:
        if isinstance(value, dict):
            return {name: convert_field(value.get(name)) for name, convert_field in fields}
        return to_json(value)  # unnamed fields (TUPLE) arrive as a Python tuple

    return convert


def _non_finite(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _utc(value: dt.datetime | dt.time) -> dt.datetime | dt.time:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC)
    return value


def _duration(value: dt.timedelta) -> str:
    sign = "-" if value < dt.timedelta(0) else ""
    value = abs(value)
    fraction = f".{value.microseconds:06d}".rstrip("0") if value.microseconds else ""
    return f"{sign}P{value.days}DT{value.seconds}{fraction}S"
