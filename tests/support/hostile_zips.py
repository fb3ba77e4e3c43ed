"""Zips built byte by byte, for what `zipfile` refuses to write or would rewrite on the way.

Each entry says what its headers declare (name, sizes, CRC, type and mode, flags, method) and
which bytes follow; anything left out is filled in honestly, so a test forges only what it names.
"""

from __future__ import annotations

import stat
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

STORED = 0
DEFLATED = 8
UNIX = 3
MSDOS = 0

_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_CENTRAL = struct.Struct("<4sBBHHHHHIIIHHHHHII")
_EOCD = struct.Struct("<4sHHHHIIH")
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")
_EOCD64_LOCATOR = struct.Struct("<4sIQI")
_U32_MAX = 0xFFFF_FFFF
_DOS_TIME, _DOS_DATE = 0, (2025 - 1980) << 9 | 1 << 5 | 1


@dataclass(frozen=True)
class RawEntry:
    """One entry as its headers will declare it."""

    name: bytes | str
    data: bytes = b""
    method: int = STORED
    #: The bytes after the local header; by default `data`, stored or deflated per `method`.
    payload: bytes | None = None
    #: Declared sizes and CRC; by default the true ones of `data` and the payload.
    size: int | None = None
    compressed_size: int | None = None
    crc: int | None = None
    #: `st_mode` stored in the high half of `external_attr`.
    mode: int = stat.S_IFREG | 0o644
    create_system: int = UNIX
    flags: int = 0
    extra: bytes = b""
    #: The name in the local header, when it should differ from the central directory's.
    local_name: bytes | None = None
    #: Where the central directory says the local header is, when it should lie.
    header_offset: int | None = None

    @property
    def raw_name(self) -> bytes:
        return self.name.encode() if isinstance(self.name, str) else self.name

    @cached_property
    def body(self) -> bytes:
        if self.payload is not None:
            return self.payload
        return deflate(self.data) if self.method == DEFLATED else self.data


def file(name: bytes | str, data: bytes = b"", mode: int = 0o644, **fields: Any) -> RawEntry:
    """A regular file entry; `fields` set any other `RawEntry` field."""
    return replace(RawEntry(name, data, mode=stat.S_IFREG | mode), **fields)


def directory(name: str, mode: int = 0o755) -> RawEntry:
    """A directory entry (`name` ends with a slash)."""
    return RawEntry(name, mode=stat.S_IFDIR | mode)


def deflate(data: bytes) -> bytes:
    """`data` as a raw deflate stream, the way zip stores it."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def deflate_zeros(size: int) -> bytes:
    """A raw deflate stream of `size` zero bytes, built without holding them in memory."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    chunk = bytes(1024 * 1024)
    parts = []
    for start in range(0, size, len(chunk)):
        parts.append(compressor.compress(chunk[:min(len(chunk), size - start)]))
    parts.append(compressor.flush())
    return b"".join(parts)


def unicode_path_extra(plain_name: bytes, unicode_name: bytes) -> bytes:
    """An Info-ZIP Unicode path extra field (0x7075) naming `unicode_name`."""
    body = struct.pack("<BI", 1, zlib.crc32(plain_name)) + unicode_name
    return struct.pack("<HH", 0x7075, len(body)) + body


def build_zip(entries: Iterable[RawEntry], *, zip64: bool = False, count: int | None = None,
              prefix: bytes = b"", comment: bytes = b"") -> bytes:
    """The bytes of a zip holding `entries`, in order.

    `zip64` moves every size and offset into zip64 extra fields and end records; `count`
    overrides the entry count of the end record; `prefix` is put before the archive without
    adjusting its offsets, as a naive self-extractor would.
    """
    out = bytearray(prefix)
    central = bytearray()
    written: list[RawEntry] = []
    for entry in entries:
        offset = len(out) - len(prefix)
        out += _local_header(entry, zip64) + entry.body
        central += _central_record(
            entry, offset if entry.header_offset is None else entry.header_offset, zip64)
        written.append(entry)
    cd_offset = len(out) - len(prefix)
    out += central
    total = len(written) if count is None else count
    if zip64:
        eocd64_offset = len(out) - len(prefix)
        out += _EOCD64.pack(b"PK\x06\x06", _EOCD64.size - 12, 45, 45, 0, 0, total, total,
                            len(central), cd_offset)
        out += _EOCD64_LOCATOR.pack(b"PK\x06\x07", 0, eocd64_offset, 1)
        out += _EOCD.pack(b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, _U32_MAX, _U32_MAX, len(comment))
    else:
        out += _EOCD.pack(b"PK\x05\x06", 0, 0, total, total, len(central), cd_offset,
                          len(comment))
    return bytes(out + comment)


def write_zip(path: Path, entries: Iterable[RawEntry], **options: Any) -> Path:
    """Write `build_zip(entries, **options)` to `path`."""
    path.write_bytes(build_zip(entries, **options))
    return path


def _declared(entry: RawEntry) -> tuple[int, int, int]:
    size = len(entry.data) if entry.size is None else entry.size
    compressed = len(entry.body) if entry.compressed_size is None else entry.compressed_size
    crc = zlib.crc32(entry.data) if entry.crc is None else entry.crc
    return size, compressed, crc


def _local_header(entry: RawEntry, zip64: bool) -> bytes:
    size, compressed, crc = _declared(entry)
    name = entry.raw_name if entry.local_name is None else entry.local_name
    extra = entry.extra
    if zip64:
        extra = struct.pack("<HHQQ", 1, 16, size, compressed) + extra
        size = compressed = _U32_MAX
    return _LOCAL.pack(b"PK\x03\x04", 45 if zip64 else 20, entry.flags, entry.method,
                       _DOS_TIME, _DOS_DATE, crc, compressed, size, len(name),
                       len(extra)) + name + extra


def _central_record(entry: RawEntry, offset: int, zip64: bool) -> bytes:
    size, compressed, crc = _declared(entry)
    extra = entry.extra
    if zip64:
        extra = struct.pack("<HHQQQ", 1, 24, size, compressed, offset) + extra
        size = compressed = offset = _U32_MAX
    name = entry.raw_name
    return _CENTRAL.pack(b"PK\x01\x02", 45 if zip64 else 20, entry.create_system,
                         45 if zip64 else 20, entry.flags, entry.method, _DOS_TIME, _DOS_DATE,
                         crc, compressed, size, len(name), len(extra), 0, 0, 0,
                         entry.mode << 16, offset) + name + extra
