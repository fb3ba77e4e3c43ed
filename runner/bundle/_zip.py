"""The zip container read strictly: the end record, the central directory, and where each entry's
data lies. Names are kept as the raw bytes of the archive; `runner.bundle.extract` decides what
is safe.

Python's `zipfile` is not used to read the directory because it rewrites what it reads: it cuts a
name at a NUL, replaces it with the Info-ZIP Unicode path extra field, and silently accepts bytes
before the archive, so what it reports is not what another extractor sees
(docs/security.md#bundle-zips). Anything ambiguous here (two end records, a local header that
disagrees with the directory, entries that overlap) makes the archive invalid instead of being
guessed at.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from itertools import pairwise

from runner.errors import InvalidBundleError

__all__ = ["MAX_DIRECTORY_BYTES", "Directory", "Entry", "data_offset", "read_directory"]

#: The most central directory the runner reads into memory: far above any real bundle (50,000
#: entries with 600 bytes of name and extra fields each), far below the extraction's memory budget.
MAX_DIRECTORY_BYTES = 32 * 1024 * 1024

_EOCD = struct.Struct("<4sHHHHIIH")
_EOCD64_LOCATOR = struct.Struct("<4sIQI")
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")
_CENTRAL = struct.Struct("<4sBBHHHHHIIIHHHHHII")
_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_EXTRA_HEADER = struct.Struct("<HH")

_EOCD_SIG = b"PK\x05\x06"
_EOCD64_LOCATOR_SIG = b"PK\x06\x07"
_EOCD64_SIG = b"PK\x06\x06"
_CENTRAL_SIG = b"PK\x01\x02"
_LOCAL_SIG = b"PK\x03\x04"

_ZIP64_EXTRA = 0x0001
_UNICODE_PATH_EXTRA = 0x7075
_FLAG_DATA_DESCRIPTOR = 0x0008
_U32_MAX = 0xFFFF_FFFF
_MAX_COMMENT = 0xFFFF


@dataclass(frozen=True, slots=True)
class Entry:
    """One central directory record, with the zip64 extra field already applied."""

    name: bytes
    create_system: int
    flags: int
    method: int
    crc: int
    compressed_size: int
    size: int
    external_attr: int
    header_offset: int
    #: The name in an Info-ZIP Unicode path extra field (0x7075), which some extractors prefer.
    unicode_name: bytes | None

    def display(self) -> str:
        """The name as it appears in error messages (quoted, undecodable bytes escaped)."""
        return repr(self.name.decode("utf-8", "backslashreplace"))


@dataclass(frozen=True, slots=True)
class Directory:
    """The archive's entries in directory order, and where each one's data must end."""

    entries: list[Entry]
    #: Local header offset -> offset of the next local header (or of the central directory).
    ends: dict[int, int]


def read_directory(fd: int, max_entries: int) -> Directory:
    """Read the central directory of the zip open on `fd`; refuse more than `max_entries`."""
    file_size = os.fstat(fd).st_size
    eocd_at, count, cd_size, cd_offset = _end_record(fd, file_size)
    if count > max_entries:
        raise InvalidBundleError(
            f"bundle zip has {count} entries; the limit is {max_entries}")
    if cd_offset + cd_size != eocd_at:
        raise InvalidBundleError(
            "bundle zip's central directory is not where its end record says "
            "(data before or inside the archive)")
    if cd_size > MAX_DIRECTORY_BYTES:
        raise InvalidBundleError(
            f"bundle zip's central directory is {cd_size} bytes; the limit is "
            f"{MAX_DIRECTORY_BYTES}")
    entries = _parse_directory(_pread_exact(fd, cd_size, cd_offset, "central directory"), count)
    return Directory(entries=entries, ends=_data_ends(entries, cd_offset))


def data_offset(fd: int, directory: Directory, entry: Entry) -> int:
    """Where `entry`'s data starts, after checking its local header agrees with the directory.

    The data must end before the next local header (or the central directory) starts, so no two
    entries share bytes: overlapping entries are how the worst zip bombs reach a compression
    ratio in the millions.
    """
    end = directory.ends[entry.header_offset]
    if entry.header_offset + _LOCAL.size + len(entry.name) > end:
        raise InvalidBundleError(f"bundle entry {entry.display()}: lies outside the archive")
    header = _pread_exact(fd, _LOCAL.size + len(entry.name), entry.header_offset,
                          f"local header of {entry.display()}")
    (signature, _version, flags, method, _time, _date, crc, compressed_size, size, name_len,
     extra_len) = _LOCAL.unpack_from(header)
    if signature != _LOCAL_SIG:
        raise InvalidBundleError(f"bundle entry {entry.display()}: no local header at its offset")
    if header[_LOCAL.size:] != entry.name or name_len != len(entry.name):
        raise InvalidBundleError(
            f"bundle entry {entry.display()}: its local header names another file")
    if method != entry.method or (flags ^ entry.flags) & 0x0001:
        raise InvalidBundleError(
            f"bundle entry {entry.display()}: its local header disagrees with the directory")
    if not flags & _FLAG_DATA_DESCRIPTOR and (
        crc != entry.crc
        or compressed_size not in (entry.compressed_size, _U32_MAX)
        or size not in (entry.size, _U32_MAX)
    ):
        raise InvalidBundleError(
            f"bundle entry {entry.display()}: its local header declares other sizes or CRC")
    start: int = entry.header_offset + _LOCAL.size + name_len + extra_len
    if start + entry.compressed_size > end:
        raise InvalidBundleError(
            f"bundle entry {entry.display()}: its data overlaps the next entry (a zip bomb?)")
    return start


def _end_record(fd: int, file_size: int) -> tuple[int, int, int, int]:
    """(offset of the end record(s), entry count, directory size, directory offset)."""
    tail_size = min(file_size, _EOCD.size + _MAX_COMMENT)
    tail = os.pread(fd, tail_size, file_size - tail_size)
    found = [
        at for at in _find_all(tail, _EOCD_SIG)
        if at + _EOCD.size <= len(tail)
        and at + _EOCD.size + _EOCD.unpack_from(tail, at)[7] == len(tail)
    ]
    if not found:
        raise InvalidBundleError("bundle is not a zip file (no end of central directory record)")
    if len(found) > 1:
        raise InvalidBundleError("bundle zip has more than one end of central directory record")
    at = found[0]
    eocd_at = file_size - tail_size + at
    locator_at = at - _EOCD64_LOCATOR.size
    if locator_at >= 0 and tail[locator_at:at].startswith(_EOCD64_LOCATOR_SIG):
        return _zip64_end_record(fd, eocd_at - _EOCD64_LOCATOR.size, tail[locator_at:at])
    (_sig, disk, cd_disk, disk_count, count, cd_size, cd_offset,
     _comment_len) = _EOCD.unpack_from(tail, at)
    if disk or cd_disk or disk_count != count:
        raise InvalidBundleError("bundle zip spans several disks")
    return eocd_at, count, cd_size, cd_offset


def _zip64_end_record(fd: int, locator_at: int, locator: bytes) -> tuple[int, int, int, int]:
    _sig, disk, record_at, disks = _EOCD64_LOCATOR.unpack(locator)
    if disk or disks != 1:
        raise InvalidBundleError("bundle zip spans several disks")
    if record_at + _EOCD64.size > locator_at:
        raise InvalidBundleError("bundle zip's zip64 end record is out of place")
    record = _pread_exact(fd, _EOCD64.size, record_at, "zip64 end record")
    (signature, record_size, _made_by, _needed, disk_no, cd_disk, disk_count, count, cd_size,
     cd_offset) = _EOCD64.unpack(record)
    if signature != _EOCD64_SIG or record_at + 12 + record_size != locator_at:
        raise InvalidBundleError("bundle zip's zip64 end record is missing or out of place")
    if disk_no or cd_disk or disk_count != count:
        raise InvalidBundleError("bundle zip spans several disks")
    return record_at, count, cd_size, cd_offset


def _parse_directory(data: bytes, count: int) -> list[Entry]:
    entries: list[Entry] = []
    at = 0
    for _ in range(count):
        if at + _CENTRAL.size > len(data):
            raise InvalidBundleError("bundle zip's central directory is truncated")
        (signature, _made_version, create_system, _needed, flags, method, _time, _date, crc,
         compressed_size, size, name_len, extra_len, comment_len, disk, _internal_attr,
         external_attr, header_offset) = _CENTRAL.unpack_from(data, at)
        if signature != _CENTRAL_SIG:
            raise InvalidBundleError("bundle zip's central directory is corrupt")
        name_at = at + _CENTRAL.size
        extra_at = name_at + name_len
        at = extra_at + extra_len + comment_len
        if at > len(data):
            raise InvalidBundleError("bundle zip's central directory is truncated")
        name = data[name_at:extra_at]
        zip64, unicode_name = _extra_fields(data[extra_at:extra_at + extra_len], name)
        if zip64 is not None:
            size, compressed_size, header_offset = _apply_zip64(
                zip64, name, size, compressed_size, header_offset)
        if disk:
            raise InvalidBundleError("bundle zip spans several disks")
        entries.append(Entry(name=name, create_system=create_system, flags=flags,
                             method=method, crc=crc, compressed_size=compressed_size,
                             size=size, external_attr=external_attr,
                             header_offset=header_offset, unicode_name=unicode_name))
    if at != len(data):
        raise InvalidBundleError(
            "bundle zip's central directory holds more than its end record counts")
    return entries


def _data_ends(entries: list[Entry], directory_start: int) -> dict[int, int]:
    ordered = sorted(entries, key=lambda entry: entry.header_offset)
    for before, entry in pairwise(ordered):
        if entry.header_offset == before.header_offset:
            raise InvalidBundleError(
                f"bundle entry {entry.display()}: shares its local header with "
                f"{before.display()}")
    starts = [entry.header_offset for entry in ordered]
    return dict(zip(starts, [*starts[1:], directory_start], strict=False))


def _extra_fields(extra: bytes, name: bytes) -> tuple[bytes | None, bytes | None]:
    """The zip64 and Unicode path extra fields' data, if present."""
    zip64 = unicode_name = None
    at = 0
    while at < len(extra):
        if at + _EXTRA_HEADER.size > len(extra):
            raise _corrupt_extra(name)
        kind, length = _EXTRA_HEADER.unpack_from(extra, at)
        body = extra[at + _EXTRA_HEADER.size:at + _EXTRA_HEADER.size + length]
        if len(body) != length:
            raise _corrupt_extra(name)
        if kind == _ZIP64_EXTRA:
            zip64 = body
        elif kind == _UNICODE_PATH_EXTRA:
            unicode_name = body[5:]  # after version (1 byte) and the CRC of the plain name
        at += _EXTRA_HEADER.size + length
    return zip64, unicode_name


def _apply_zip64(body: bytes, name: bytes, size: int, compressed_size: int,
                 header_offset: int) -> tuple[int, int, int]:
    """Replace the fields marked as 'in the zip64 extra' by its values, in the order of APPNOTE."""
    values = iter(struct.unpack_from(f"<{len(body) // 8}Q", body))
    try:
        if size == _U32_MAX:
            size = next(values)
        if compressed_size == _U32_MAX:
            compressed_size = next(values)
        if header_offset == _U32_MAX:
            header_offset = next(values)
    except StopIteration:
        raise _corrupt_extra(name) from None
    return size, compressed_size, header_offset


def _corrupt_extra(name: bytes) -> InvalidBundleError:
    return InvalidBundleError(
        f"bundle entry {name.decode('utf-8', 'backslashreplace')!r}: corrupt extra field")


def _find_all(data: bytes, needle: bytes) -> list[int]:
    found = []
    at = data.find(needle)
    while at >= 0:
        found.append(at)
        at = data.find(needle, at + 1)
    return found


def _pread_exact(fd: int, size: int, offset: int, what: str) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise InvalidBundleError(f"bundle zip is truncated (in its {what})")
    return data
