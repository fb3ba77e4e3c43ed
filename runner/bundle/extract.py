"""Safe extraction of a verified bundle zip into a fresh, empty per-attempt directory.

Every entry is checked against the whole policy before the first byte is written, then each is
streamed to disk with bounded memory. Anything unsafe fails the bundle, naming the entry; nothing
is renamed or skipped, because a zip that needs sanitising has been tampered with (Python's
`zipfile` silently rewrites such names; docs/security.md#bundle-zips).

- Names: empty, absolute, `..`, backslash, NUL, a component over 255 bytes or a path over 4095
  are rejected, and so is an Info-ZIP Unicode path field naming another file (some extractors
  prefer it). Empty and `.` components are harmless and ignored, so names that then coincide
  (`a/b`, `a//b`, `a/./b`) are duplicates; so is a path that is both a file and a directory.
- Types: regular files and directories only. Symlinks, devices, FIFOs and sockets are rejected,
  by the Unix type in the high half of `external_attr` (read for Unix-like hosts, and for any
  host that stores one there, as 7-Zip and some DOS ports do and Info-ZIP's unzip honours).
- Encrypted entries are rejected. Compression is stored (0) or deflated (8) only: what `zip`,
  cargo-lambda, SAM, Serverless and the JavaScript archivers write, and what every extractor
  reads; deflate64, bzip2, LZMA, zstd and the rest are rejected by method number.
- Sizes: the entry count, the total declared size and each entry's ratio of declared to
  compressed size are checked first, in that order (a bundle honestly over the size limit is
  `Bundle.TooLarge`, not refused for its ratio). While writing, an entry is cut off the moment
  it inflates one byte past its declared size, so the bytes actually written never exceed
  what was checked: a bomb with forged header sizes is stopped at the size it claims. An entry
  that inflates to less, leaves trailing data or fails its CRC is rejected too.
- Modes: the execute bit is kept (0755 if any `x` bit is set, else 0644); directories are 0755;
  `bootstrap` at the root is always 0755; setuid, setgid and sticky never survive.
- Writing: relative to a descriptor of the target, with `O_CREAT|O_EXCL|O_NOFOLLOW` and
  directories made here, so no entry can be redirected through anything already on disk.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import cast

# ISA-L's inflate and CRC-32 (the same API as `zlib`'s): a warm task extracts its bundle again
# every time, and they take half of zlib's time on a large bootstrap (docs/performance.md).
from isal import isal_zlib as zlib

from runner.bundle import _zip as ziparchive
from runner.bundle._zip import Directory, Entry
from runner.bundle.layout import BOOTSTRAP
from runner.errors import BundleTooLargeError, InvalidBundleError, SandboxError
from runner.settings import Settings

__all__ = [
    "RATIO_GRACE_BYTES", "ExtractLimits", "ExtractStats", "extract", "limits_from",
]

#: Entries whose declared size is at most this are exempt from the ratio limit: a small file of
#: zeros or repeated text legitimately compresses a thousandfold and cannot hurt anyone.
RATIO_GRACE_BYTES = 1024 * 1024

_STORED = 0
_DEFLATED = 8
#: Flag bits meaning the entry is encrypted: traditional, strong, and masked central directory.
_ENCRYPTED_FLAGS = 0x0001 | 0x0040 | 0x2000
#: Hosts whose `external_attr` carries a Unix mode in its high 16 bits (APPNOTE 4.4.2).
_UNIX_HOSTS = frozenset({3, 16, 19, 30})  # Unix, BeOS, OS X (Darwin), AtheOS
_FILE_MODE = 0o644
_EXEC_MODE = 0o755
_DIR_MODE = 0o755
_BOOTSTRAP = BOOTSTRAP.encode()  # kept executable whatever its recorded mode
_NAME_MAX = 255
_PATH_MAX = 4095

#: What the inflater raises on corrupt data (a class: the package's stub types it as an instance).
_CORRUPT = cast("type[Exception]", zlib.error)
_IN_CHUNK = 256 * 1024
_OUT_CHUNK = 1024 * 1024
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
_REJECTED_TYPES = {
    stat.S_IFLNK: "is a symbolic link",
    stat.S_IFCHR: "is a character device",
    stat.S_IFBLK: "is a block device",
    stat.S_IFIFO: "is a FIFO",
    stat.S_IFSOCK: "is a socket",
}


@dataclass(frozen=True)
class ExtractLimits:
    """How much a bundle may unpack to."""

    max_entries: int
    max_bytes: int
    max_ratio: int


def limits_from(settings: Settings) -> ExtractLimits:
    """The extraction limits configured for this runner."""
    return ExtractLimits(max_entries=settings.max_bundle_entries,
                         max_bytes=settings.max_unzipped_bytes,
                         max_ratio=settings.max_compression_ratio)


@dataclass(frozen=True)
class ExtractStats:
    """What an extraction wrote."""

    entries: int
    files: int
    directories: int
    bytes_written: int


@dataclass(frozen=True, slots=True)
class _Item:
    """An entry that passed every check: its normalised relative path, its final mode, and
    where its data starts in the zip."""

    entry: Entry
    path: bytes
    is_dir: bool
    mode: int
    start: int


def extract(zip_path: Path, dest: Path, limits: ExtractLimits) -> ExtractStats:
    """Extract the bundle at `zip_path` into the existing, empty directory `dest`.

    Raises InvalidBundleError (naming the entry) or BundleTooLargeError for a bundle that breaks
    the policy, and SandboxError (retryable) when the runner cannot write it: no free space, or
    a target that is not a fresh directory. The caller wipes `dest` whatever happens.
    """
    zip_fd = _open(zip_path, os.O_RDONLY | os.O_CLOEXEC, "bundle zip")
    try:
        items = _plan(zip_fd, ziparchive.read_directory(zip_fd, limits.max_entries), limits)
        root_fd = _open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                        "extraction directory")
        try:
            _check_target(root_fd, dest, items, limits)
            return _Writer(zip_fd, root_fd).write(items)
        finally:
            os.close(root_fd)
    finally:
        os.close(zip_fd)


def _open(path: Path, flags: int, what: str) -> int:
    try:
        return os.open(path, flags)
    except OSError as e:
        raise SandboxError(f"cannot open the {what} {str(path)!r}: {e.strerror}") from e


# --- Checking every entry before anything is written -------------------------------------------


def _plan(zip_fd: int, directory: Directory, limits: ExtractLimits) -> list[_Item]:
    _check_total(directory, limits)
    items: list[_Item] = []
    kinds: dict[bytes, bool] = {}  # path -> is a directory (explicit entries and their parents)
    named: set[bytes] = set()  # paths an entry names explicitly
    for entry in directory.entries:
        _check_encoding(entry)
        parts, dir_name = _parts(entry)
        is_dir = _is_directory(entry, dir_name)
        path = b"/".join(parts)
        _claim(entry, parts, is_dir, kinds, named)
        _check_sizes(entry, is_dir, limits)
        items.append(_Item(entry=entry, path=path, is_dir=is_dir,
                           mode=_DIR_MODE if is_dir else _file_mode(entry, path),
                           start=ziparchive.data_offset(zip_fd, directory, entry)))
    return items


def _check_total(directory: Directory, limits: ExtractLimits) -> None:
    """A bundle that declares more than the limit is too large, whatever else is wrong with it:
    checked before each entry's ratio, so an honest bundle over the limit is told so."""
    declared = 0
    for entry in directory.entries:
        declared += entry.size
        if declared > limits.max_bytes:
            raise BundleTooLargeError(
                f"bundle unzips to more than {limits.max_bytes} bytes (declared by its entries, "
                f"at {entry.display()})")


def _invalid(entry: Entry, reason: str) -> InvalidBundleError:
    return InvalidBundleError(f"bundle entry {entry.display()}: {reason}")


def _check_encoding(entry: Entry) -> None:
    if entry.flags & _ENCRYPTED_FLAGS:
        raise _invalid(entry, "is encrypted")
    if entry.method not in (_STORED, _DEFLATED):
        raise _invalid(entry, f"uses compression method {entry.method}; only stored (0) and "
                              "deflated (8) are supported")


def _parts(entry: Entry) -> tuple[list[bytes], bool]:
    """The path's components with empty and `.` ones dropped, and whether it ends with `/`."""
    name = entry.name
    if not name:
        raise _invalid(entry, "has an empty name")
    for byte, reason in ((b"\0", "has a NUL in its name"), (b"\\", "has a backslash in its name")):
        if byte in name:
            raise _invalid(entry, reason)
    if name.startswith(b"/"):
        raise _invalid(entry, "is an absolute path")
    if entry.unicode_name is not None and entry.unicode_name != name:
        raise _invalid(entry, "has a Unicode path extra field naming another file")
    raw = name.split(b"/")
    if b".." in raw:
        raise _invalid(entry, "has a '..' component")
    parts = [part for part in raw if part not in (b"", b".")]
    if not parts:
        raise _invalid(entry, "names the bundle root itself")
    if any(len(part) > _NAME_MAX for part in parts):
        raise _invalid(entry, f"has a path component longer than {_NAME_MAX} bytes")
    if sum(map(len, parts)) + len(parts) - 1 > _PATH_MAX:
        raise _invalid(entry, f"has a path longer than {_PATH_MAX} bytes")
    return parts, name.endswith(b"/")


def _unix_mode(entry: Entry) -> int | None:
    mode = entry.external_attr >> 16
    if entry.create_system in _UNIX_HOSTS or stat.S_IFMT(mode):
        return mode
    return None


def _is_directory(entry: Entry, dir_name: bool) -> bool:
    mode = _unix_mode(entry)
    kind = stat.S_IFMT(mode) if mode is not None else 0
    if kind in _REJECTED_TYPES:
        raise _invalid(entry, _REJECTED_TYPES[kind])
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise _invalid(entry, f"has an unknown file type {kind:#o}")
    if kind and (kind == stat.S_IFDIR) != dir_name:
        raise _invalid(entry, "has a file type that disagrees with its name")
    return dir_name


def _claim(entry: Entry, parts: list[bytes], is_dir: bool, kinds: dict[bytes, bool],
           named: set[bytes]) -> None:
    """Record the entry's path and its parents; refuse duplicates and file/directory clashes."""
    for depth in range(1, len(parts)):
        parent = b"/".join(parts[:depth])
        if kinds.setdefault(parent, True) is False:
            raise _invalid(entry, f"is inside {parent.decode('utf-8', 'backslashreplace')!r}, "
                                  "which is a file")
    path = b"/".join(parts)
    if path in named:
        raise _invalid(entry, "is a duplicate name")
    named.add(path)
    if kinds.setdefault(path, is_dir) != is_dir:
        raise _invalid(entry, "is both a file and a directory")


def _check_sizes(entry: Entry, is_dir: bool, limits: ExtractLimits) -> None:
    if is_dir and entry.size:
        raise _invalid(entry, "is a directory with data")
    if entry.method == _STORED and entry.compressed_size != entry.size:
        raise _invalid(entry, "is stored with different compressed and uncompressed sizes")
    if entry.size > max(RATIO_GRACE_BYTES, limits.max_ratio * entry.compressed_size):
        raise _invalid(entry, f"compresses {entry.size} bytes into {entry.compressed_size}, "
                              f"over the ratio limit of {limits.max_ratio}:1 (a zip bomb?)")


def _file_mode(entry: Entry, path: bytes) -> int:
    mode = _unix_mode(entry)
    executable = path == _BOOTSTRAP or (mode is not None and mode & 0o111)
    return _EXEC_MODE if executable else _FILE_MODE


def _check_target(root_fd: int, dest: Path, items: list[_Item], limits: ExtractLimits) -> None:
    """Refuse a target that is not empty, or whose filesystem cannot hold the bundle."""
    if os.listdir(root_fd):
        raise SandboxError(f"extraction directory {str(dest)!r} is not empty")
    fs = os.fstatvfs(root_fd)
    block = fs.f_frsize or 4096
    needed = min(limits.max_bytes,
                 sum(-(-item.entry.size // block) * block for item in items if not item.is_dir))
    free = fs.f_bavail * fs.f_frsize
    if needed > free:
        raise SandboxError(f"not enough free space to extract the bundle into {str(dest)!r}: "
                           f"it needs {needed} bytes, {free} are free")
    if fs.f_files and len(items) > fs.f_favail:
        raise SandboxError(f"not enough free inodes to extract the bundle into {str(dest)!r}: "
                           f"it needs {len(items)}, {fs.f_favail} are free")


# --- Writing ----------------------------------------------------------------------------------


class _Writer:
    """Writes checked items below `root_fd`, reading each entry's data from `zip_fd`."""

    def __init__(self, zip_fd: int, root_fd: int) -> None:
        self._zip_fd = zip_fd
        self._root_fd = root_fd
        self._made: set[bytes] = set()

    def write(self, items: list[_Item]) -> ExtractStats:
        files = written = 0
        for item in items:
            try:
                if item.is_dir:
                    self._make_dirs(item.path)
                else:
                    written += self._write_file(item)
                    files += 1
            except OSError as e:
                raise _sandbox_failure(item, e) from e
        return ExtractStats(entries=len(items), files=files, directories=len(self._made),
                            bytes_written=written)

    def _make_dirs(self, path: bytes) -> None:
        missing = []
        while path and path not in self._made:
            missing.append(path)
            path = path.rpartition(b"/")[0]
        for directory in reversed(missing):
            os.mkdir(directory, _DIR_MODE, dir_fd=self._root_fd)
            # mkdir's mode is filtered by the umask; the child (another uid) must traverse it.
            os.chmod(directory, _DIR_MODE, dir_fd=self._root_fd)
            self._made.add(directory)

    def _write_file(self, item: _Item) -> int:
        entry = item.entry
        self._make_dirs(item.path.rpartition(b"/")[0])
        out = os.open(item.path, _WRITE_FLAGS, 0o600, dir_fd=self._root_fd)
        try:
            if entry.method == _STORED:
                crc = self._copy(item.start, entry.size, out)
            else:
                crc = self._inflate(entry, item.start, out)
            if crc != entry.crc:
                raise _invalid(entry, "fails its CRC check")
            os.fchmod(out, item.mode)
        finally:
            os.close(out)
        return entry.size

    def _copy(self, start: int, size: int, out: int) -> int:
        crc = 0
        end = start + size
        while start < end:
            chunk = self._read(start, min(_OUT_CHUNK, end - start))
            crc = zlib.crc32(chunk, crc)
            _write_all(out, chunk)
            start += len(chunk)
        return crc

    def _inflate(self, entry: Entry, start: int, out: int) -> int:
        """Inflate into `out`, never producing more than one byte past the declared size."""
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        end = start + entry.compressed_size
        written = crc = 0
        pending = b""
        while not inflater.eof:
            if not pending and start < end:
                pending = self._read(start, min(_IN_CHUNK, end - start))
                start += len(pending)
            try:
                chunk = inflater.decompress(pending, min(_OUT_CHUNK, entry.size - written + 1))
            except _CORRUPT as e:
                raise _invalid(entry, f"has corrupt compressed data ({e})") from e
            pending = inflater.unconsumed_tail
            if not chunk and not pending and start >= end and not inflater.eof:
                raise _invalid(entry, "has truncated compressed data")
            written += len(chunk)
            if written > entry.size:
                raise _invalid(entry, f"inflates past its declared size of {entry.size} bytes "
                                      "(a zip bomb?)")
            crc = zlib.crc32(chunk, crc)
            _write_all(out, chunk)
        if written != entry.size:
            raise _invalid(entry, f"inflates to {written} bytes, not its declared {entry.size}")
        if pending or inflater.unused_data or start != end:
            raise _invalid(entry, "has data after the end of its compressed stream")
        return crc

    def _read(self, offset: int, size: int) -> bytes:
        data = os.pread(self._zip_fd, size, offset)
        if len(data) != size:
            raise InvalidBundleError("bundle zip is truncated (in an entry's data)")
        return data


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _sandbox_failure(item: _Item, error: OSError) -> SandboxError:
    reason = "no space left" if error.errno in _NO_SPACE else error.strerror
    return SandboxError(f"cannot write bundle entry {item.entry.display()}: {reason}")
