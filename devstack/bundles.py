"""Bundle zips made the way Lambda tooling makes them, byte for byte reproducible.

A folder becomes a zip whose entries are sorted, dated 1980-01-01, carry only the execute bit of
their mode (0755 or 0644) and are stored uncompressed (deflate's output varies between zlib
builds), so the same sources always give the same SHA-256: the sample events can pin it.
"""

from __future__ import annotations

import io
import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path

_EPOCH = (1980, 1, 1, 0, 0, 0)


def zip_files(files: Mapping[str, tuple[bytes, int]]) -> bytes:
    """A zip of `name -> (content, mode)`, reproducibly."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(files):
            content, mode = files[name]
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.create_system = 3  # Unix, so the mode below is honoured
            executable = mode & 0o111
            info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            archive.writestr(info, content)
    return buffer.getvalue()


def zip_folder(folder: Path) -> bytes:
    """Every regular file below `folder`, zipped reproducibly (symlinks are refused)."""
    files: dict[str, tuple[bytes, int]] = {}
    for path in folder.rglob("*"):
        if path.is_symlink():
            raise ValueError(f"{path} is a symlink; Lambda bundles cannot carry links")
        if path.is_file():
            files[path.relative_to(folder).as_posix()] = (path.read_bytes(),
                                                         path.stat().st_mode)
    return zip_files(files)


def bundle_bytes(path: Path) -> bytes:
    """The zip at `path`, or the folder at `path` zipped."""
    return zip_folder(path) if path.is_dir() else path.read_bytes()
