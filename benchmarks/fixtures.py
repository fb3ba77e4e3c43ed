"""What the benchmarks run, built from source: the Rust bootstrap and the bundle zips."""

from __future__ import annotations

import io
import os
import random
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
RESULTS = BENCHMARKS / "results"
RUST = BENCHMARKS / "rust"
NODE_LAYER = REPO / "layers" / "nodejs" / "build"
NODE_HANDLER = REPO / "tests" / "fixtures" / "node" / "handlers" / "trivial"
_WORDS = [b"const", b"function", b"return", b"module.exports", b"require", b"=>", b"{", b"}",
          b"async", b"await", b"this", b"value", b"undefined", b"null", b"import", b"export"]


def build_bootstrap(target_dir: Path = RESULTS / "cargo") -> Path:
    """The benchmarks' Rust bootstrap (std only), compiled in release mode."""
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    done = subprocess.run(
        [cargo, "build", "--release", "--locked", "--offline", "--quiet",
         "--manifest-path", str(RUST / "Cargo.toml")],
        env={**os.environ, "CARGO_TARGET_DIR": str(target_dir)},
        capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"cargo build failed:\n{done.stdout}{done.stderr}")
    return target_dir / "release" / "bootstrap"


def zip_bytes(files: dict[str, tuple[bytes, int]], *, compress: bool = True) -> bytes:
    """A zip of `files` (name -> (content, mode)) with Unix modes, as Lambda tooling writes."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as zf:
        for name, (content, mode) in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = method
            info.external_attr = (stat.S_IFREG | mode) << 16
            zf.writestr(info, content)
    return buffer.getvalue()


def provided_bundle(bootstrap: Path) -> bytes:
    """A custom-runtime bundle holding only the bootstrap."""
    return zip_bytes({"bootstrap": (bootstrap.read_bytes(), 0o755)})


def node_bundle() -> bytes:
    """The trivial Node handler of the test fixtures, as a bundle."""
    return zip_bytes({path.name: (path.read_bytes(), 0o644)
                      for path in sorted(NODE_HANDLER.iterdir()) if path.is_file()})


def large_bundle(bootstrap: Path, total_bytes: int, files: int = 20) -> bytes:
    """The bootstrap and `files` files of random bytes (stored, as they would not compress)
    adding up to `total_bytes`: a bundle as large as Lambda allows, that runs."""
    rng = random.Random(200)  # noqa: S311 - reproducible test data, not secrets
    size = total_bytes // files
    entries = {f"data/blob{i:03d}.bin": (rng.randbytes(size), 0o644) for i in range(files)}
    return zip_bytes({"bootstrap": (bootstrap.read_bytes(), 0o755), **entries}, compress=False)


def write_tree(root: Path, files: int, total_bytes: int) -> int:
    """A bundle's folder of `files` files (half JavaScript-like text, half random bytes, with
    log-normal sizes) adding up to about `total_bytes`, and a bootstrap; returns the bytes."""
    rng = random.Random(7)  # noqa: S311 - reproducible test data, not secrets
    weights = [rng.lognormvariate(0, 1.5) for _ in range(files)]
    scale = total_bytes / sum(weights)
    written = 0
    for index, weight in enumerate(weights):
        size = max(1, int(weight * scale))
        path = root / f"pkg{index % 97}" / f"sub{index % 13}" / f"file{index}.js"
        path.parent.mkdir(parents=True, exist_ok=True)
        if index % 2:
            data = rng.randbytes(size)
        else:
            data = b" ".join(rng.choice(_WORDS) for _ in range(size // 5 + 1))[:size]
        path.write_bytes(data)
        written += size
    bootstrap = root / "bootstrap"
    bootstrap.write_bytes(b"#!/bin/sh\n")
    bootstrap.chmod(0o755)
    return written


def info_zip(root: Path, dest: Path) -> Path:
    """Zip the folder `root` with Info-ZIP's `zip -r`, as a user's build would."""
    subprocess.run(["zip", "-q", "-r", str(dest), "."], cwd=root, check=True)
    return dest
