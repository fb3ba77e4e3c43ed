"""Fuzzing the zip reader and extractor (runner.bundle._zip, runner.bundle.extract), the parser that
reads a bundle's bytes: property-based, with Hypothesis, for a bounded number of examples.

Two sources of input: the seed corpus (tests/fuzz/corpus/zip: honest zips from `zipfile` and
hand-built ones with zip64, a Unicode path field, setuid modes, a link), mutated byte by byte
(flips, overwrites with boundary values at header-sized widths, insertions, deletions,
truncations); and archives built entry by entry from hostile names, modes, methods and forged
sizes. For every input the extractor must either write a tree it can account for or refuse the
bundle with its own error, and never: raise anything else, write outside its target, write more
than its limits, keep a setuid bit or a link, or take long (Hypothesis' deadline).

`pytest -m fuzz` selects this tier; `UDF_FUZZ_EXAMPLES` raises the example count for a longer
run. Whatever a run finds becomes a regression test, with the input that found it, in
tests/unit/runner/test_extract.py.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.bundle.extract import ExtractLimits, extract
from runner.containment.removal import remove_tree
from runner.errors import BundleTooLargeError, InvalidBundleError
from tests.support.hostile_zips import DEFLATED, MSDOS, STORED, UNIX, RawEntry, build_zip

pytestmark = pytest.mark.fuzz

CORPUS = Path(__file__).parent / "corpus" / "zip"
SEEDS = [path.read_bytes() for path in sorted(CORPUS.glob("*.zip"))]
LIMITS = ExtractLimits(max_entries=64, max_bytes=256 * 1024, max_ratio=100)
#: What refusing a bundle may raise; anything else is a bug.
REFUSALS = (InvalidBundleError, BundleTooLargeError)
EXAMPLES = int(os.environ.get("UDF_FUZZ_EXAMPLES", "1500"))
FUZZ = settings(max_examples=EXAMPLES, deadline=2000, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
#: Values a forged header field likes to take.
BOUNDARIES = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF]

executions = {"mutated": 0, "built": 0}


@contextmanager
def _workspace() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="udf-fuzz-"))
    try:
        yield base
    finally:
        remove_tree(base)


def _check(data: bytes) -> None:
    """Extract `data`; the properties every input must keep."""
    with _workspace() as base:
        zip_path, dest = base / "bundle.zip", base / "out"
        zip_path.write_bytes(data)
        dest.mkdir()
        try:
            stats = extract(zip_path, dest, LIMITS)
        except REFUSALS:
            stats = None
        assert sorted(p.name for p in base.iterdir()) == ["bundle.zip", "out"]
        written = 0
        for path in dest.rglob("*"):
            info = path.lstat()
            assert stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode), path
            assert not info.st_mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX), path
            written += info.st_size if stat.S_ISREG(info.st_mode) else 0
        assert written <= LIMITS.max_bytes
        if stats is not None:
            assert written == stats.bytes_written


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        match draw(st.sampled_from(["flip", "field", "insert", "delete", "truncate"])):
            case "flip" if data:
                data[at] ^= 1 << draw(st.integers(0, 7))
            case "field":
                width = draw(st.sampled_from([1, 2, 4, 8]))
                value = draw(st.sampled_from(BOUNDARIES) | st.integers(0, len(data) + 64))
                data[at:at + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
            case "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=64))
            case "delete":
                del data[at:at + draw(st.integers(1, 64))]
            case "truncate":
                del data[at:]
    return bytes(data)


NAMES = st.lists(st.sampled_from(["a", "b", "..", ".", "", "bootstrap", "\\", "a\0b", "é",
                                  "x" * 300, "/"]), min_size=1, max_size=4).map("/".join)
MODES = st.sampled_from([0o644, 0o755, 0o4755, 0o2755, 0o1777,
                         stat.S_IFLNK | 0o777, stat.S_IFIFO | 0o644, stat.S_IFCHR | 0o644,
                         stat.S_IFDIR | 0o755, stat.S_IFREG | 0o644])


@st.composite
def built(draw: st.DrawFn) -> bytes:
    entries = []
    for _ in range(draw(st.integers(0, 8))):
        data = draw(st.binary(max_size=512) | st.just(b"\0" * 200_000))
        entries.append(RawEntry(
            name=draw(NAMES), data=data, method=draw(st.sampled_from([STORED, DEFLATED, 12, 99])),
            mode=draw(MODES), create_system=draw(st.sampled_from([UNIX, MSDOS, 19])),
            flags=draw(st.sampled_from([0, 0x0001, 0x0008, 0x0800])),
            size=draw(st.none() | st.sampled_from(BOUNDARIES)),
            compressed_size=draw(st.none() | st.sampled_from(BOUNDARIES)),
            crc=draw(st.none() | st.integers(0, 0xFFFF_FFFF)),
        ))
    return build_zip(entries, zip64=draw(st.booleans()))


def test_the_corpus_is_there() -> None:
    assert len(SEEDS) >= 8
    for seed in SEEDS:
        _check(seed)


@FUZZ
@given(mutated())
def test_mutated_zips_are_extracted_or_refused_never_worse(data: bytes) -> None:
    executions["mutated"] += 1
    _check(data)


@FUZZ
@given(built())
def test_hostile_entries_are_extracted_or_refused_never_worse(data: bytes) -> None:
    executions["built"] += 1
    _check(data)


def test_record_the_executions_run(capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print(f"\nzip fuzzing: {executions['mutated']} mutated and {executions['built']} built "
              f"archives extracted or refused")
