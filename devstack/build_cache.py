"""Builds from source kept outside the clone, and the compilers they need.

A build is keyed by everything that goes into it (sources, lock files, commands, tool versions)
and kept under `${XDG_CACHE_HOME:-~/.cache}/udf-runner`, so only the first run on a machine pays
for it. Concurrent sessions share the cache: each build holds a lock, and a failed build leaves
nothing behind. The test fixtures (`tests/support/toolchains.py`) and the Rust sample
(`devstack.transfer_stats`) are built this way.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path


class ToolchainMissing(RuntimeError):  # noqa: N818 - named for what the reader must fix
    """A compiler or tool a build needs is not installed."""


def cache_root() -> Path:
    """Where builds are kept: `${XDG_CACHE_HOME:-~/.cache}/udf-runner`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "udf-runner"


def tool_path() -> str:
    """PATH for builds: the virtualenv's bin (cargo-lambda, zig's Python wheel), cargo's, Go's."""
    extra = [str(Path(sys.executable).parent), str(Path.home() / ".cargo" / "bin"),
             "/usr/local/go/bin"]
    return os.pathsep.join([*extra, os.environ.get("PATH", "")])


def tool_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment with `tool_path()` and `extra`."""
    return {**os.environ, "PATH": tool_path(), **(extra or {})}


def require(tool: str, how: str) -> str:
    """The path of `tool`, or ToolchainMissing saying how to install it."""
    found = shutil.which(tool, path=tool_path())
    if found is None:
        raise ToolchainMissing(f"{tool} is not installed: {how}")
    return found


#: The README's recipe for a Rust bundle: `cargo lambda`'s release build, zipped, from the lock.
CARGO_LAMBDA_RELEASE = ("cargo", "lambda", "build", "--release", "--output-format", "zip",
                        "--locked")


def require_rust() -> None:
    """ToolchainMissing unless cargo and cargo-lambda are installed."""
    require("cargo", "install Rust (rustup, https://rustup.rs) and put ~/.cargo/bin on PATH")
    require("cargo-lambda", "run `make setup` (pip installs cargo-lambda and ziglang into .venv)")


def run(argv: Sequence[str], *, cwd: Path | None = None,
        env: Mapping[str, str] | None = None) -> str:
    """Run a build step; its output is shown only when it fails."""
    done = subprocess.run(list(argv), cwd=cwd, env=tool_env(env), capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n"
                           f"{done.stdout}{done.stderr}")
    return done.stdout


def versions(*argv: Sequence[str]) -> list[str]:
    """What each version command prints, for a build key."""
    return [run(command).strip() for command in argv]


def _tree_parts(root: Path) -> Iterator[bytes]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and "target" not in path.relative_to(root).parts:
            yield path.relative_to(root).as_posix().encode()
            yield path.read_bytes()


def build_key(*parts: str, trees: Sequence[Path] = ()) -> str:
    """A digest of the source trees (lock files included) and of the commands and versions."""
    digest = hashlib.sha256()
    for text in parts:
        digest.update(text.encode() + b"\0")
    for tree in trees:
        for part in _tree_parts(tree):
            digest.update(part + b"\0")
    return digest.hexdigest()


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the lock file at `path` (waiting for whoever holds it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def is_locked(path: Path) -> bool:
    """Whether a process holds the lock file at `path` now."""
    try:
        lock = path.open("a")
    except FileNotFoundError:
        return False
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def cache_dir(name: str, key: str) -> Path:
    """Where the build `name` of `key` is kept once built."""
    return cache_root() / "fixtures" / f"{name}-{key[:20]}"


def lock_of(dest: Path) -> Path:
    """The lock a build of `dest` holds."""
    return dest.with_name(dest.name + ".lock")


def cached(name: str, key: str, build: Callable[[Path], None]) -> Path:
    """The folder `build` fills, built once per key; a failed build leaves nothing behind."""
    dest = cache_dir(name, key)
    if dest.is_dir():
        return dest
    with locked(lock_of(dest)):
        if dest.is_dir():  # another session built it while this one waited
            return dest
        staging = dest.with_name(f".{dest.name}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            build(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        staging.rename(dest)
    return dest
