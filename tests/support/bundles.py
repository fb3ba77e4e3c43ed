"""Build test bundles from source: folders with files and modes, zipped as Lambda tooling does."""

from __future__ import annotations

import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path

#: A file's content, or (content, mode) to set its Unix mode.
FileSpec = str | bytes | tuple[str | bytes, int]


def write_tree(root: Path, files: Mapping[str, FileSpec]) -> Path:
    """Write `files` (relative path -> content or (content, mode)) under `root`."""
    for name, spec in files.items():
        content, mode = spec if isinstance(spec, tuple) else (spec, 0o644)
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        path.chmod(mode)
    return root


def zip_tree(root: Path, dest: Path) -> Path:
    """Zip the folder `root` into `dest`, keeping Unix modes as `zip -r` (and cargo-lambda) do."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(root.rglob("*")):
            if path.is_dir():
                continue
            info = zipfile.ZipInfo.from_file(path, path.relative_to(root).as_posix())
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | stat.S_IMODE(path.stat().st_mode)) << 16
            zf.writestr(info, path.read_bytes())
    return dest
