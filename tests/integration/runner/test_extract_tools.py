"""Extraction of zips made by real tools (Info-ZIP `zip`, Python's streaming `zipfile`),
checked against Info-ZIP `unzip`, and the memory a 200 MB bundle costs.

Needs Info-ZIP `zip` and `unzip` on PATH (Debian: `apt-get install zip unzip`)."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from runner.bundle.extract import ExtractLimits, extract
from runner.errors import InvalidBundleError
from runner.settings import LAMBDA_UNZIPPED_LIMIT
from tests.support.bundles import write_tree

LIMITS = ExtractLimits(max_entries=50_000, max_bytes=LAMBDA_UNZIPPED_LIMIT, max_ratio=100)
#: The issue's budget for the whole fetch-and-extract path of a 200 MB bundle.
RSS_BUDGET_BYTES = 64 * 1024 * 1024

def info_zip(src: Path, dest: Path, *options: str) -> Path:
    """`zip -r` the contents of `src` into `dest`, as `cd src && zip -r dest .` would."""
    subprocess.run(["zip", "-q", "-r", *options, str(dest), "."], cwd=src, check=True)
    return dest


def tree_of(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """relative path -> (permission bits, content or None for a directory)."""
    return {
        str(p.relative_to(root)): (stat.S_IMODE(p.lstat().st_mode),
                                   None if p.is_dir() else p.read_bytes())
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = write_tree(tmp_path / "src", {
        "bootstrap": ("#!/bin/sh\necho hello\n", 0o755),
        "lib/deep/nested/module.js": "exports.x = 1;\n" * 2000,
        "bin/helper": (b"\x7fELF" + bytes(5000), 0o4755),
        "data/café ü.json": '{"a": 1}',
    })
    (src / "empty" / "dir").mkdir(parents=True)
    return src


def test_info_zip_bundle_extracts_like_unzip_with_safe_modes(
        source: Path, tmp_path: Path) -> None:
    bundle = info_zip(source, tmp_path / "bundle.zip")
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    stats = extract(bundle, ours, LIMITS)
    subprocess.run(["unzip", "-q", str(bundle), "-d", str(theirs)], check=True)

    assert (stats.files, stats.directories) == (4, 7)
    mine = tree_of(ours)
    assert {name: content for name, (_, content) in mine.items()} == {
        name: content for name, (_, content) in tree_of(theirs).items()}
    assert "data/café ü.json" in mine  # raw UTF-8 name, not zipfile's cp437 reading of it
    assert {name: mode for name, (mode, _) in mine.items()} == {
        "bin": 0o755, "bin/helper": 0o755, "bootstrap": 0o755, "data": 0o755,
        "data/café ü.json": 0o644, "empty": 0o755, "empty/dir": 0o755, "lib": 0o755,
        "lib/deep": 0o755, "lib/deep/nested": 0o755, "lib/deep/nested/module.js": 0o644,
    }


def test_info_zip_stored_symlink_is_rejected(source: Path, tmp_path: Path) -> None:
    (source / "lib" / "escape").symlink_to("/etc/passwd")
    bundle = info_zip(source, tmp_path / "bundle.zip", "--symlinks")
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(InvalidBundleError, match="'lib/escape': is a symbolic link"):
        extract(bundle, dest, LIMITS)
    assert list(dest.iterdir()) == []


def test_streamed_zip_with_data_descriptors_extracts(tmp_path: Path) -> None:
    class Unseekable(io.RawIOBase):
        """A pipe-like sink: zipfile then writes sizes in data descriptors after the data."""

        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: object) -> int:
            view = memoryview(b)  # type: ignore[arg-type]
            self.data += view
            return len(view)

    sink = Unseekable()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("bootstrap", "w") as out:
            out.write(b"#!/bin/sh\n")
        with zf.open("lib/big.txt", "w") as out:
            out.write(b"streamed line\n" * 50_000)
    bundle = tmp_path / "streamed.zip"
    bundle.write_bytes(sink.data)
    assert all(info.flag_bits & 0x08 for info in zipfile.ZipFile(bundle).infolist())
    dest = tmp_path / "out"
    dest.mkdir()
    assert extract(bundle, dest, LIMITS).bytes_written == 10 + 14 * 50_000
    assert (dest / "lib" / "big.txt").read_bytes() == b"streamed line\n" * 50_000


_MEASURE = """
import json, sys
from pathlib import Path
from runner.bundle.extract import ExtractLimits, extract

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

limits = ExtractLimits(max_entries=50_000, max_bytes=262_144_000, max_ratio=100)
before = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current RSS
stats = extract(Path(sys.argv[1]), Path(sys.argv[2]), limits)
print(json.dumps({"before": before, "peak": status("VmHWM:"), "bytes": stats.bytes_written}))
"""


@pytest.mark.slow
def test_200_mb_bundle_extracts_in_bounded_memory(tmp_path: Path) -> None:
    # A native binary (incompressible, stored) and a large text file (deflated): both paths.
    src = tmp_path / "src"
    src.mkdir()
    with (src / "bootstrap").open("wb") as out:
        for _ in range(170):
            out.write(os.urandom(1024 * 1024))
    (src / "bootstrap").chmod(0o755)
    with (src / "data.jsonl").open("w") as out:
        for i in range(700_000):
            out.write(json.dumps({"id": i, "name": f"user-{i * 7919 % 100_003}"}) + "\n")
    bundle = info_zip(src, tmp_path / "big.zip")
    dest = tmp_path / "out"
    dest.mkdir()
    measured = subprocess.run([sys.executable, "-c", _MEASURE, str(bundle), str(dest)],
                              check=True, capture_output=True, text=True)
    figures = json.loads(measured.stdout)
    assert figures["bytes"] > 200_000_000
    assert figures["peak"] - figures["before"] < RSS_BUDGET_BYTES / 4
