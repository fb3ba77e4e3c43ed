"""The sample datasets: reproducible, and shaped like the documented tables."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from devstack import datasets


def test_the_same_seed_gives_the_same_data_and_another_seed_does_not() -> None:
    assert datasets.generate() == datasets.generate()
    assert datasets.generate(seed=1) != datasets.generate()


def test_every_table_has_its_schemas_columns_of_equal_length() -> None:
    data = datasets.generate()

    for name, schema in datasets.SCHEMAS.items():
        columns = data.tables[name]
        assert list(columns) == [column for column, _ in schema]
        assert len({len(values) for values in columns.values()}) == 1


def test_transfers_are_ordered_by_block_and_log_index_within_the_sample_blocks() -> None:
    transfers = datasets.generate().tables["erc20_transfers"]
    positions = list(zip(transfers["block_number"], transfers["log_index"], strict=True))

    assert len(positions) == datasets.TRANSFER_COUNT
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
    first, last = datasets.FIRST_BLOCK, datasets.FIRST_BLOCK + datasets.BLOCK_COUNT - 1
    assert all(first <= block <= last for block, _ in positions)
    assert set(transfers["token"]) <= {address for address, _, _ in datasets.TOKENS}
    assert all(sender != receiver for sender, receiver in
               zip(transfers["from"], transfers["to"], strict=True))


def test_blocks_chain_by_parent_hash() -> None:
    blocks = datasets.generate().tables["blocks"]

    assert blocks["parent_hash"][1:] == blocks["hash"][:-1]
    assert blocks["number"] == list(range(datasets.FIRST_BLOCK,
                                          datasets.FIRST_BLOCK + datasets.BLOCK_COUNT))


def test_the_sample_database_is_built_once_and_then_shared(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = datasets.sample_database()
    built_at = first.stat().st_mtime_ns

    again = datasets.sample_database()

    assert again == first
    assert again.stat().st_mtime_ns == built_at
    assert first.is_relative_to(tmp_path / "udf-runner")
    with duckdb.connect(str(first), read_only=True) as con:
        counts = {name: con.execute(f'select count(*) from "{name}"').fetchone()  # noqa: S608
                  for name in datasets.DATASETS}
    assert counts == {"blocks": (datasets.BLOCK_COUNT,),
                      "erc20_transfers": (datasets.TRANSFER_COUNT,),
                      "erc20_tokens": (len(datasets.TOKENS),)}
