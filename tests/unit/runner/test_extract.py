"""Safe extraction: hand-built hostile zips are rejected naming their entry, writing nothing
outside the target; honest zips come out with the right files and modes."""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from runner.bundle import _zip as ziparchive
from runner.bundle.extract import (
    RATIO_GRACE_BYTES,
    ExtractLimits,
    ExtractStats,
    extract,
    limits_from,
)
from runner.errors import (
    BundleTooLargeError,
    InvalidBundleError,
    RunnerError,
    SandboxError,
)
from runner.settings import LAMBDA_UNZIPPED_LIMIT, Settings
from tests.support.bundles import write_tree, zip_tree
from tests.support.hostile_zips import (
    DEFLATED,
    MSDOS,
    RawEntry,
    build_zip,
    deflate,
    deflate_zeros,
    directory,
    file,
    unicode_path_extra,
)

DEFAULTS = ExtractLimits(max_entries=50_000, max_bytes=LAMBDA_UNZIPPED_LIMIT, max_ratio=100)


@dataclass
class Target:
    """A zip to extract, a fresh target directory, and everything around them to watch."""

    around: Path
    zip_path: Path
    dest: Path

    def extract(self, zip_bytes: bytes, limits: ExtractLimits = DEFAULTS) -> ExtractStats:
        self.zip_path.write_bytes(zip_bytes)
        return extract(self.zip_path, self.dest, limits)

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """Every path around the target except inside it: (mode, size)."""
        seen = {}
        for path in self.around.rglob("*"):
            if self.dest not in path.parents:
                info = path.lstat()
                seen[str(path)] = (info.st_mode, info.st_size)
        return seen

    def written(self) -> dict[str, int]:
        """Files and directories in the target: relative path -> size (directories: -1)."""
        return {str(p.relative_to(self.dest)): -1 if p.is_dir() else p.lstat().st_size
                for p in self.dest.rglob("*")}

    def modes(self) -> dict[str, int]:
        return {str(p.relative_to(self.dest)): stat.S_IMODE(p.lstat().st_mode)
                for p in self.dest.rglob("*")}


@pytest.fixture
def target(tmp_path: Path) -> Target:
    around = tmp_path / "around"
    dest = around / "attempt" / "task"
    dest.mkdir(parents=True)
    (around / "attempt" / "sibling.txt").write_text("untouched")
    return Target(around=around, zip_path=around / "bundle.zip", dest=dest)


def rejected(target: Target, zip_bytes: bytes, error: type[RunnerError], *fragments: str,
             limits: ExtractLimits = DEFAULTS) -> RunnerError:
    """Extract, expect `error` whose message holds every fragment; nothing changed around."""
    target.zip_path.write_bytes(zip_bytes)
    before = target.snapshot()
    with pytest.raises(error) as caught:
        extract(target.zip_path, target.dest, limits)
    for fragment in fragments:
        assert fragment in caught.value.message
    assert target.snapshot() == before
    return caught.value


# --- Unsafe names and types: rejected before anything is written -------------------------------

HOSTILE_NAMES: Sequence[tuple[str, RawEntry, str]] = [
    ("zip-slip", file("../escaped.txt", b"x"), "'..' component"),
    ("nested zip-slip", file("a/../../escaped.txt", b"x"), "'..' component"),
    ("trailing dotdot", directory("a/.."), "'..' component"),
    ("backslash", file("..\\escaped.txt", b"x"), "backslash"),
    ("NUL", file(b"bootstrap\x00.txt", b"x"), "NUL"),
    ("empty name", file(b"", b"x"), "empty name"),
    ("the root itself", directory("./"), "bundle root"),
    ("symlink", RawEntry("link", b"../../etc/passwd", mode=stat.S_IFLNK | 0o777),
     "symbolic link"),
    ("symlink from a DOS host with Unix bits",
     RawEntry("link", b"/etc/passwd", create_system=MSDOS, mode=stat.S_IFLNK | 0o777),
     "symbolic link"),
    ("character device", RawEntry("null", mode=stat.S_IFCHR | 0o666),
     "character device"),
    ("block device", RawEntry("sda", mode=stat.S_IFBLK | 0o660), "block device"),
    ("FIFO", RawEntry("pipe", mode=stat.S_IFIFO | 0o644), "FIFO"),
    ("socket", RawEntry("sock", mode=stat.S_IFSOCK | 0o755), "socket"),
    ("unknown type", RawEntry("odd", mode=0o030644), "unknown file type"),
    ("directory type, file name", RawEntry("d", mode=stat.S_IFDIR | 0o755),
     "disagrees with its name"),
    ("file type, directory name", file("d/", b""), "disagrees with its name"),
    ("encrypted", file("secret.txt", b"x", flags=0x0001), "encrypted"),
    ("strong encryption", file("secret.txt", b"x", flags=0x0040), "encrypted"),
    ("bzip2", file("b.txt", b"x", method=12, payload=b"BZh9"), "compression method 12"),
    ("deflate64", file("b.txt", b"x", method=9, payload=b"\x00"), "compression method 9"),
    ("zstd", file("b.txt", b"x", method=93, payload=b"\x00"), "compression method 93"),
    ("Unicode path field naming another file",
     file("innocent.txt", b"x", extra=unicode_path_extra(b"innocent.txt", b"../evil.txt")),
     "Unicode path extra field"),
    ("long component", file("a" * 256, b"x"), "longer than 255"),
    ("long path", file("/".join(["d" * 200] * 21), b"x"), "longer than 4095"),
    ("directory with data", RawEntry("d/", b"data", mode=stat.S_IFDIR | 0o755),
     "directory with data"),
    ("stored sizes differ", file("a.txt", b"abc", size=2), "stored with different"),
]


@pytest.mark.parametrize(("entry", "reason"), [(e, r) for _, e, r in HOSTILE_NAMES],
                         ids=[i for i, _, _ in HOSTILE_NAMES])
def test_unsafe_entry_is_rejected_by_name_before_anything_is_written(
        target: Target, entry: RawEntry, reason: str) -> None:
    zip_bytes = build_zip([file("bootstrap", b"#!/bin/sh\n", 0o755), entry])
    shown = repr(entry.raw_name.decode("utf-8", "backslashreplace"))
    rejected(target, zip_bytes, InvalidBundleError, f"bundle entry {shown}", reason)
    assert target.written() == {}


def test_absolute_path_is_rejected_and_not_written_where_it_points(target: Target) -> None:
    escape = target.around / "attempt" / "escaped.txt"
    zip_bytes = build_zip([file(str(escape), b"x")])
    rejected(target, zip_bytes, InvalidBundleError, repr(str(escape)), "absolute path")
    assert not escape.exists()


DUPLICATES: Sequence[tuple[str, Sequence[RawEntry], str, str]] = [
    ("same name", [file("a/b", b"1"), file("a/b", b"2")], "a/b", "duplicate"),
    ("double slash", [file("a/b", b"1"), file("a//b", b"2")], "a//b", "duplicate"),
    ("dot component", [file("a/b", b"1"), file("a/./b", b"2")], "a/./b", "duplicate"),
    ("leading dot", [file("bootstrap", b"1"), file("./bootstrap", b"2")], "./bootstrap",
     "duplicate"),
    ("file, then directory", [file("a", b"1"), directory("a/")], "a/", "duplicate"),
    ("file, then inside it", [file("a", b"1"), file("a/b", b"2")], "a/b", "which is a file"),
    ("inside, then the file", [file("a/b", b"1"), file("a", b"2")], "a",
     "both a file and a directory"),
]


@pytest.mark.parametrize(("entries", "name", "reason"), [d[1:] for d in DUPLICATES],
                         ids=[d[0] for d in DUPLICATES])
def test_duplicate_names_are_rejected_even_after_normalisation(
        target: Target, entries: Sequence[RawEntry], name: str, reason: str) -> None:
    rejected(target, build_zip(entries), InvalidBundleError, f"bundle entry {name!r}", reason)
    assert target.written() == {}


# --- Bombs and limits --------------------------------------------------------------------------


def test_bomb_with_forged_header_size_is_stopped_at_its_declared_size(target: Target) -> None:
    # The header says 10 bytes; the data inflates to 300 MB.
    bomb = file("bomb.bin", bytes(10), method=DEFLATED, payload=deflate_zeros(300_000_000))
    error = rejected(target, build_zip([bomb]), InvalidBundleError, "'bomb.bin'",
                     "inflates past its declared size of 10 bytes")
    assert "zip bomb" in error.message
    assert sum(target.written().values()) <= 10


def test_bomb_with_forged_sizes_is_caught_in_any_entry(target: Target) -> None:
    honest = [file(f"f{i}", b"data" * 100, method=DEFLATED) for i in range(3)]
    bomb = file("lib/x.so", bytes(1000), method=DEFLATED, payload=deflate_zeros(50_000_000))
    rejected(target, build_zip([*honest, bomb]), InvalidBundleError, "'lib/x.so'",
             "inflates past its declared size of 1000 bytes")
    assert sum(size for size in target.written().values() if size > 0) <= 3 * 400 + 1000


def test_honest_bomb_over_the_ratio_limit_is_rejected_unread(target: Target) -> None:
    size = 20 * RATIO_GRACE_BYTES
    bomb = file("zeros.bin", method=DEFLATED, payload=deflate_zeros(size), size=size, crc=0)
    rejected(target, build_zip([bomb]), InvalidBundleError, "'zeros.bin'", "ratio limit of 100:1")
    assert target.written() == {}


def test_small_files_may_compress_beyond_the_ratio(target: Target) -> None:
    data = bytes(RATIO_GRACE_BYTES)
    stats = target.extract(build_zip([file("zeros.bin", data, method=DEFLATED)]))
    assert stats.bytes_written == len(data)


def test_ratio_limit_is_configurable(target: Target) -> None:
    data = b"abc" * RATIO_GRACE_BYTES
    limits = ExtractLimits(max_entries=10, max_bytes=LAMBDA_UNZIPPED_LIMIT, max_ratio=10_000)
    assert target.extract(build_zip([file("a.txt", data, method=DEFLATED)]), limits).files == 1


def test_declared_total_over_the_limit_is_too_large(target: Target) -> None:
    limits = ExtractLimits(max_entries=10, max_bytes=1000, max_ratio=100)
    entries = [file("a.bin", bytes(600)), file("b.bin", bytes(600))]
    error = rejected(target, build_zip(entries), BundleTooLargeError, "more than 1000 bytes",
                     "'b.bin'", limits=limits)
    assert not error.is_retryable
    assert target.written() == {}


def test_an_honest_bundle_over_the_limit_is_too_large_not_a_bomb(target: Target) -> None:
    # 20 MiB of zeros compress about 1000:1, over the ratio limit too: the size is what counts.
    size = 20 * RATIO_GRACE_BYTES
    entries = [file("small.txt", b"hello"),
               file("zeros.bin", method=DEFLATED, payload=deflate_zeros(size), size=size, crc=0)]
    limits = ExtractLimits(max_entries=10, max_bytes=10 * RATIO_GRACE_BYTES, max_ratio=100)

    rejected(target, build_zip(entries), BundleTooLargeError,
             f"more than {10 * RATIO_GRACE_BYTES} bytes", "'zeros.bin'", limits=limits)
    assert target.written() == {}


def test_default_limit_is_lambdas_unzipped_size(target: Target) -> None:
    over = LAMBDA_UNZIPPED_LIMIT // 2 + 1
    entries = [file(name, method=DEFLATED, payload=deflate_zeros(over), size=over, crc=0)
               for name in ("a", "b")]
    limits = ExtractLimits(max_entries=10, max_bytes=LAMBDA_UNZIPPED_LIMIT, max_ratio=10_000)
    rejected(target, build_zip(entries), BundleTooLargeError, f"{LAMBDA_UNZIPPED_LIMIT} bytes",
             limits=limits)


def test_100000_entries_are_rejected_before_reading_them(target: Target) -> None:
    entries = [file(f"f{i}") for i in range(100_000)]
    rejected(target, build_zip(entries, zip64=True), InvalidBundleError, "100000 entries",
             "limit is 50000")
    assert target.written() == {}


def test_end_record_undercounting_the_directory_is_rejected(target: Target) -> None:
    entries = [file(f"f{i}") for i in range(100_000)]
    rejected(target, build_zip(entries, zip64=True, count=1), InvalidBundleError,
             "more than its end record counts")
    assert target.written() == {}


# --- Damaged data, caught while streaming -----------------------------------------------------


DAMAGED: Sequence[tuple[str, RawEntry, str]] = [
    ("inflates to less than declared",
     file("short.txt", b"x" * 10, method=DEFLATED, size=1000), "inflates to 10 bytes"),
    ("bad CRC", file("a.txt", b"hello", crc=1234), "CRC"),
    ("bad CRC, deflated", file("a.txt", b"hello", method=DEFLATED, crc=1234), "CRC"),
    ("trailing data", file("a.txt", b"hello", method=DEFLATED,
                           payload=deflate(b"hello") + b"junk"), "after the end"),
    ("truncated stream", file("a.txt", b"hello" * 1000, method=DEFLATED,
                              payload=deflate(b"hello" * 1000)[:-3]), "truncated"),
    ("corrupt stream", file("a.txt", b"hello", method=DEFLATED, payload=b"\xff" * 16),
     "corrupt compressed data"),
]


@pytest.mark.parametrize(("entry", "reason"), [(e, r) for _, e, r in DAMAGED],
                         ids=[i for i, _, _ in DAMAGED])
def test_damaged_entry_is_rejected_by_name(target: Target, entry: RawEntry, reason: str) -> None:
    shown = repr(entry.raw_name.decode())
    rejected(target, build_zip([entry]), InvalidBundleError, f"bundle entry {shown}", reason)


# --- The container ------------------------------------------------------------------------------


def test_not_a_zip_is_invalid(target: Target) -> None:
    rejected(target, b"#!/bin/sh\necho this is a script, not a zip\n" * 100, InvalidBundleError,
             "not a zip file")


def test_empty_file_is_invalid(target: Target) -> None:
    rejected(target, b"", InvalidBundleError, "not a zip file")


def test_truncated_zip_is_invalid(target: Target) -> None:
    zip_bytes = build_zip([file(f"f{i}.txt", b"content" * 100) for i in range(20)])
    rejected(target, zip_bytes[: len(zip_bytes) // 2], InvalidBundleError, "not a zip file")


def test_zip_missing_its_middle_is_invalid(target: Target) -> None:
    zip_bytes = build_zip([file(f"f{i}.txt", b"content" * 100) for i in range(20)])
    rejected(target, zip_bytes[:1000] + zip_bytes[2000:], InvalidBundleError,
             "not where its end record says")


def test_data_before_the_archive_is_invalid(target: Target) -> None:
    rejected(target, build_zip([file("a.txt", b"a")], prefix=b"MZ stub " * 10),
             InvalidBundleError, "not where its end record says")


def test_two_end_records_are_ambiguous(target: Target) -> None:
    inner = build_zip([file("a.txt", b"a")])
    fake = inner[-22:-2] + (0).to_bytes(2, "little")
    zip_bytes = inner[:-2] + len(fake).to_bytes(2, "little") + fake
    rejected(target, zip_bytes, InvalidBundleError, "more than one end of central directory")


def test_local_header_naming_another_file_is_invalid(target: Target) -> None:
    entry = file("readme.txt", b"x", local_name=b"bootstrap.")
    rejected(target, build_zip([entry]), InvalidBundleError, "'readme.txt'",
             "local header names another file")


def test_entries_sharing_a_local_header_are_invalid(target: Target) -> None:
    entries = [file("a.txt", b"x" * 100), file("b.txt", b"x" * 100, header_offset=0)]
    rejected(target, build_zip(entries), InvalidBundleError, "'b.txt': shares its local header")


def test_overlapping_entries_are_invalid(target: Target) -> None:
    # The first entry's declared data runs over the second entry's local header.
    data = b"hello " * 100
    overlong = len(deflate(data)) + 10
    entries = [file("a.txt", data, method=DEFLATED, compressed_size=overlong),
               file("b.txt", b"y")]
    zip_bytes = build_zip(entries)
    rejected(target, zip_bytes, InvalidBundleError, "'a.txt'", "overlaps the next entry")


def test_header_offset_beyond_the_archive_is_invalid(target: Target) -> None:
    entries = [file("a.txt", b"x"), file("b.txt", b"y", header_offset=2**63)]
    rejected(target, build_zip(entries, zip64=True), InvalidBundleError, "'b.txt'",
             "outside the archive")


def patched(zip_bytes: bytes, offset: int, new: bytes) -> bytes:
    """`zip_bytes` with the bytes at `offset` (negative: from the end) replaced by `new`."""
    at = offset % len(zip_bytes)
    return zip_bytes[:at] + new + zip_bytes[at + len(new):]


ONE_FILE = build_zip([file("a.txt", b"hello")])
ONE_FILE_ZIP64 = build_zip([file("a.txt", b"hello")], zip64=True)
CENTRAL_AT = ONE_FILE.rfind(b"PK\x01\x02")
ZIP64_EXTRA_AT = ONE_FILE_ZIP64.rfind(b"PK\x01\x02") + 46 + len(b"a.txt")
LOCATOR_AT = ONE_FILE_ZIP64.rfind(b"PK\x06\x07")
CORRUPT_CONTAINERS: Sequence[tuple[str, bytes, str]] = [
    ("several disks", patched(ONE_FILE, -18, b"\x01\x00"), "spans several disks"),
    ("zip64, several disks", patched(ONE_FILE_ZIP64, LOCATOR_AT + 4, b"\x01"),
     "spans several disks"),
    ("zip64 record misplaced", patched(ONE_FILE_ZIP64, LOCATOR_AT + 8, b"\x00" * 8),
     "zip64 end record"),
    ("central directory signature", patched(ONE_FILE, CENTRAL_AT, b"PK\x09\x09"),
     "central directory is corrupt"),
    ("end record overcounts", build_zip([file("a.txt", b"x")], count=2), "truncated"),
    ("local header signature", patched(ONE_FILE, 0, b"PK\x09\x09"), "no local header"),
    ("local header method", patched(ONE_FILE, 8, b"\x08"), "disagrees with the directory"),
    ("local header CRC", patched(ONE_FILE, 14, b"\x00\x00"), "other sizes or CRC"),
    ("extra field overruns", build_zip([file("a.txt", b"x", extra=b"\x99\x99\x10\x00ab")]),
     "corrupt extra field"),
    ("zip64 extra too short", patched(ONE_FILE_ZIP64, ZIP64_EXTRA_AT + 2, b"\x08"),
     "corrupt extra field"),
]


@pytest.mark.parametrize(("zip_bytes", "reason"), [(z, r) for _, z, r in CORRUPT_CONTAINERS],
                         ids=[i for i, _, _ in CORRUPT_CONTAINERS])
def test_corrupt_container_is_invalid(target: Target, zip_bytes: bytes, reason: str) -> None:
    rejected(target, zip_bytes, InvalidBundleError, reason)
    assert target.written() == {}


def test_oversized_central_directory_is_refused_unread(
        target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ziparchive, "MAX_DIRECTORY_BYTES", 100)
    rejected(target, build_zip([file(f"f{i}", b"") for i in range(3)]), InvalidBundleError,
             "central directory is", "the limit is 100")


# --- Modes --------------------------------------------------------------------------------------


def test_setuid_setgid_and_sticky_are_dropped_and_bootstrap_is_executable(
        target: Target) -> None:
    entries = [
        file("bootstrap", b"#!/bin/sh\n", 0o644),
        file("bin/tool", b"\x7fELF", 0o4755),
        file("data/config", b"{}", 0o6644),
        file("data/private", b"", 0o600),
        file("data/odd", b"", 0o010),
        RawEntry("shared/", mode=stat.S_IFDIR | 0o1777),
        RawEntry("locked/", mode=stat.S_IFDIR | 0o000),
    ]
    target.extract(build_zip(entries))
    assert target.modes() == {
        "bootstrap": 0o755, "bin": 0o755, "bin/tool": 0o755, "data": 0o755,
        "data/config": 0o644, "data/private": 0o644, "data/odd": 0o755,
        "shared": 0o755, "locked": 0o755,
    }


def test_modes_ignore_the_umask(target: Target) -> None:
    saved = os.umask(0o077)
    try:
        target.extract(build_zip([file("bootstrap", b"#!/bin/sh\n", 0o755), file("a/b", b"")]))
    finally:
        os.umask(saved)
    assert target.modes() == {"bootstrap": 0o755, "a": 0o755, "a/b": 0o644}


def test_entries_without_unix_modes_get_0644_and_bootstrap_0755(target: Target) -> None:
    entries = [RawEntry(name, b"x", create_system=MSDOS, mode=0)
               for name in ("bootstrap", "index.js", "lib/util.js")]
    target.extract(build_zip(entries))
    assert target.modes() == {"bootstrap": 0o755, "index.js": 0o644, "lib": 0o755,
                              "lib/util.js": 0o644}


def test_nested_bootstrap_is_not_made_executable(target: Target) -> None:
    target.extract(build_zip([file("bin/bootstrap", b"x")]))
    assert target.modes()["bin/bootstrap"] == 0o644


# --- Honest bundles ------------------------------------------------------------------------------


def test_zipfile_bundle_extracts_files_modes_and_nested_dirs(
        target: Target, tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "src", {
        "bootstrap": ("#!/bin/sh\necho hi\n", 0o755),
        "lib/deep/er/mod.js": "module.exports = 1;\n" * 500,
        "data.bin": bytes(range(256)) * 100,
    })
    stats = extract(zip_tree(tree, target.zip_path), target.dest, DEFAULTS)
    assert stats == ExtractStats(entries=3, files=3, directories=3,
                                 bytes_written=18 + 20 * 500 + 25_600)
    for name in ("bootstrap", "lib/deep/er/mod.js", "data.bin"):
        assert (target.dest / name).read_bytes() == (tree / name).read_bytes()
    assert target.modes()["bootstrap"] == 0o755


def test_zipfile_directory_entries_make_empty_directories(target: Target) -> None:
    with zipfile.ZipFile(target.zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.mkdir("empty")
        zf.mkdir("tree/inner")
        zf.writestr("tree/inner/file.txt", "text " * 1000)
    stats = extract(target.zip_path, target.dest, DEFAULTS)
    assert (stats.entries, stats.files) == (3, 1)
    assert target.written() == {"empty": -1, "tree": -1, "tree/inner": -1,
                                "tree/inner/file.txt": 5000}


def test_zip64_archive_extracts(target: Target) -> None:
    entries = [file("bootstrap", b"#!/bin/sh\n", 0o755), directory("d/"),
               file("d/big.txt", b"line\n" * 100_000, method=DEFLATED)]
    zip_bytes = build_zip(entries, zip64=True)
    target.extract(zip_bytes)
    assert (target.dest / "d/big.txt").read_bytes() == b"line\n" * 100_000
    assert target.modes() == {"bootstrap": 0o755, "d": 0o755, "d/big.txt": 0o644}


def test_harmless_spellings_are_normalised(target: Target) -> None:
    target.extract(build_zip([file("./bootstrap", b"#!/bin/sh\n"), file("a//b/./c", b"c")]))
    assert target.written() == {"bootstrap": 10, "a": -1, "a/b": -1, "a/b/c": 1}
    assert target.modes()["bootstrap"] == 0o755


def test_unicode_path_field_agreeing_with_the_name_is_fine(target: Target) -> None:
    name = "données/café.txt".encode()
    target.extract(build_zip([file(name, b"x", extra=unicode_path_extra(name, name))]))
    assert target.written() == {"données": -1, "données/café.txt": 1}


def test_non_utf8_names_are_kept_as_bytes(target: Target) -> None:
    target.extract(build_zip([file(b"caf\x82.txt", b"x")]))
    assert [os.fsencode(p.name) for p in target.dest.iterdir()] == [b"caf\x82.txt"]


def test_empty_archive_extracts_nothing(target: Target) -> None:
    assert target.extract(build_zip([])) == ExtractStats(0, 0, 0, 0)


def test_limits_come_from_settings(work_root: Path) -> None:
    settings = Settings.from_env({"UDF_RUNNER_WORK_ROOT": str(work_root),
                                  "UDF_RUNNER_MAX_BUNDLE_ENTRIES": "7",
                                  "UDF_RUNNER_MAX_UNZIPPED_BYTES": "1000",
                                  "UDF_RUNNER_MAX_COMPRESSION_RATIO": "50"})
    assert limits_from(settings) == ExtractLimits(7, 1000, 50)
    assert limits_from(Settings()) == DEFAULTS


# --- The target ----------------------------------------------------------------------------------


def test_target_that_is_not_empty_is_refused(target: Target) -> None:
    (target.dest / "leftover").write_text("x")
    error = rejected(target, build_zip([file("a", b"")]), SandboxError, "not empty")
    assert error.is_retryable


def test_target_that_is_a_symlink_is_refused(target: Target) -> None:
    real = target.dest.parent / "real"
    real.mkdir()
    target.dest.rmdir()
    target.dest.symlink_to(real)
    rejected(target, build_zip([file("a", b"")]), SandboxError, "extraction directory")
    assert list(real.iterdir()) == []


def test_bundle_larger_than_the_free_space_is_a_retryable_sandbox_error(target: Target) -> None:
    # The declared size passes limits raised to the sky but not the filesystem's free space
    # (statvfs), so nothing is written at all.
    huge = 2**60
    limits = ExtractLimits(max_entries=10, max_bytes=2**62, max_ratio=2**62)
    entry = file("huge.bin", method=DEFLATED, payload=deflate(b""), size=huge)
    error = rejected(target, build_zip([entry], zip64=True), SandboxError,
                     "not enough free space", limits=limits)
    assert error.is_retryable
    assert target.written() == {}


@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_large_deflated_entries_come_out_whole_across_many_chunks(target: Target,
                                                                  level: int) -> None:
    """Entries several times the read and write chunks, each compressed as zip tools do at
    another level, come out byte for byte (ISA-L inflates what zlib deflated)."""
    data = b"".join(os.urandom(4096) + bytes(4096) + b"text %d\n" % i * 64 for i in range(300))
    source = target.zip_path.with_name("source")
    with zipfile.ZipFile(source, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        archive.writestr("bin/big", data)

    target.extract(source.read_bytes())

    assert (target.dest / "bin" / "big").read_bytes() == data
