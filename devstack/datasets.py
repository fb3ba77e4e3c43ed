"""The sample datasets behind the local Query Service, generated the same on every machine.

Three tables shaped like public Ethereum data (ERC-20 tokens, blocks and transfers), drawn from
one fixed-seed generator, so a query's answer is the same for everyone and can be asserted in
tests. `build_database` writes them into a DuckDB file that the Query Service copies from.

Addresses and hashes are lowercase `0x` hex; `value` is the raw integer amount in the token's
smallest unit (DECIMAL(38,0): returned as a string); `timestamp` is UTC.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from devstack import build_cache

SEED = 20240115
BLOCK_COUNT = 1_000
TRANSFER_COUNT = 5_000
FIRST_BLOCK = 19_000_000
FIRST_BLOCK_TIME = dt.datetime(2024, 1, 15, 0, 0, 0)  # naive UTC, like the TIMESTAMP column
BLOCK_INTERVAL = dt.timedelta(seconds=12)
ADDRESS_COUNT = 200

#: Mainnet ERC-20 contracts the sample transfers move: (address, symbol, decimals).
TOKENS = (
    ("0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", "USDC", 6),
    ("0xdac17f958d2ee523a2206206994597c13d831ec7", "USDT", 6),
    ("0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2", "WETH", 18),
    ("0x6b175474e89094c44da98b954eedeac495271d0f", "DAI", 18),
    ("0x514910771af9ca656af840dff83e8264ecf986ca", "LINK", 18),
    ("0x1f9840a85d5af5bf1d1762f925bdaddc4201f984", "UNI", 18),
)

#: Each dataset's columns, in order, with their DuckDB types.
SCHEMAS: dict[str, tuple[tuple[str, str], ...]] = {
    "erc20_tokens": (
        ("address", "VARCHAR"), ("symbol", "VARCHAR"), ("decimals", "INTEGER"),
    ),
    "blocks": (
        ("number", "BIGINT"), ("hash", "VARCHAR"), ("parent_hash", "VARCHAR"),
        ("timestamp", "TIMESTAMP"), ("miner", "VARCHAR"), ("gas_used", "BIGINT"),
        ("transaction_count", "INTEGER"),
    ),
    "erc20_transfers": (
        ("block_number", "BIGINT"), ("tx_hash", "VARCHAR"), ("log_index", "INTEGER"),
        ("token", "VARCHAR"), ("from", "VARCHAR"), ("to", "VARCHAR"),
        ("value", "DECIMAL(38,0)"), ("timestamp", "TIMESTAMP"),
    ),
}
DATASETS = frozenset(SCHEMAS)

Columns = dict[str, list[Any]]

# How many digits a transfer's amount has in millionths of a token (5 digits: 0.01-0.1 tokens).
_AMOUNT_DIGITS = range(5, 14)
_AMOUNT_WEIGHTS = (20, 20, 15, 12, 10, 8, 6, 5, 4)


@dataclass(frozen=True)
class SampleData:
    """Every dataset as columns of Python values."""

    tables: dict[str, Columns]


@dataclass(frozen=True)
class DatasetInfo:
    """What `udf-runner datasets` shows of one dataset."""

    name: str
    columns: tuple[tuple[str, str], ...]
    rows: int


def catalog(data: SampleData | None = None) -> list[DatasetInfo]:
    """Every dataset by name: its columns with their types, and how many rows it has."""
    data = data or generate()
    return [DatasetInfo(name, schema, len(data.tables[name][schema[0][0]]))
            for name, schema in sorted(SCHEMAS.items())]


def generate(seed: int = SEED) -> SampleData:
    """The sample datasets for `seed` (always the same for the same seed)."""
    rng = random.Random(seed)  # noqa: S311 - sample data, reproducible on purpose
    addresses = [_hex(rng, 20) for _ in range(ADDRESS_COUNT)]
    block_of_transfer = sorted(rng.randrange(BLOCK_COUNT) for _ in range(TRANSFER_COUNT))
    blocks = _blocks(rng, addresses[:8], block_of_transfer)
    transfers = _transfers(rng, addresses, block_of_transfer)
    tokens: Columns = {
        "address": [address for address, _, _ in TOKENS],
        "symbol": [symbol for _, symbol, _ in TOKENS],
        "decimals": [decimals for _, _, decimals in TOKENS],
    }
    return SampleData({"erc20_tokens": tokens, "blocks": blocks, "erc20_transfers": transfers})


def sample_database() -> Path:
    """The sample datasets' DuckDB file, built once per machine (`devstack.build_cache`, keyed
    by this module's source and DuckDB's version) and shared by every stack: each opens it read
    only. Generating and writing it took a third of a second of every stack's start."""
    import duckdb  # noqa: PLC0415 - see build_database

    def build(folder: Path) -> None:
        build_database(folder / "samples.duckdb")

    key = build_cache.build_key(Path(__file__).read_text(), duckdb.__version__)
    return build_cache.cached("sample-datasets", key, build) / "samples.duckdb"


def build_database(path: Path, data: SampleData | None = None) -> Path:
    """Write the sample datasets into a new DuckDB file at `path`."""
    import duckdb  # noqa: PLC0415 - only here: the CLI reads the schemas without paying for it

    data = data or generate()
    with duckdb.connect(str(path)) as con:
        for name, schema in SCHEMAS.items():
            columns = ", ".join(f'"{column}" {kind}' for column, kind in schema)
            con.execute(f'CREATE TABLE "{name}" ({columns})')
            # One statement per table, columnar: row-at-a-time inserts take seconds.
            selects = ", ".join(f"unnest(${i + 1}::{kind}[])" for i, (_, kind) in enumerate(schema))
            con.execute(f'INSERT INTO "{name}" SELECT {selects}',
                        [data.tables[name][column] for column, _ in schema])
    return path


def _blocks(rng: random.Random, miners: list[str], block_of_transfer: list[int]) -> Columns:
    per_block = [0] * BLOCK_COUNT
    for block in block_of_transfer:
        per_block[block] += 1
    hashes = [_hex(rng, 32) for _ in range(BLOCK_COUNT)]
    return {
        "number": [FIRST_BLOCK + i for i in range(BLOCK_COUNT)],
        "hash": hashes,
        "parent_hash": [_hex(rng, 32), *hashes[:-1]],
        "timestamp": [_block_time(i) for i in range(BLOCK_COUNT)],
        "miner": [rng.choice(miners) for _ in range(BLOCK_COUNT)],
        "gas_used": [rng.randrange(8_000_000, 30_000_000) for _ in range(BLOCK_COUNT)],
        "transaction_count": [count + rng.randrange(50, 250) for count in per_block],
    }


def _transfers(rng: random.Random, addresses: list[str], block_of_transfer: list[int]) -> Columns:
    columns: Columns = {name: [] for name, _ in SCHEMAS["erc20_transfers"]}
    log_index, previous = 0, -1
    for block in block_of_transfer:
        log_index = log_index + 1 if block == previous else 0
        previous = block
        token, _, decimals = rng.choice(TOKENS)
        sender, receiver = rng.sample(addresses, 2)
        columns["block_number"].append(FIRST_BLOCK + block)
        columns["tx_hash"].append(_hex(rng, 32))
        columns["log_index"].append(log_index)
        columns["token"].append(token)
        columns["from"].append(sender)
        columns["to"].append(receiver)
        columns["value"].append(_amount(rng, decimals))
        columns["timestamp"].append(_block_time(block))
    return columns


def _amount(rng: random.Random, decimals: int) -> Decimal:
    # Integers only (float powers may differ in the last bit between C libraries): from 0.01 to
    # 10 million whole tokens, mostly small, a few whales.
    digits = rng.choices(_AMOUNT_DIGITS, weights=_AMOUNT_WEIGHTS)[0]
    micro_units = rng.randrange(10 ** (digits - 1), 10**digits)
    return Decimal(micro_units * 10 ** (decimals - 6))


def _block_time(index: int) -> dt.datetime:
    return FIRST_BLOCK_TIME + index * BLOCK_INTERVAL


def _hex(rng: random.Random, size: int) -> str:
    return f"0x{rng.getrandbits(size * 8):0{size * 2}x}"
