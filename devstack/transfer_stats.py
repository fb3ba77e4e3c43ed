"""transfer-stats (`samples/transfer-stats`): the Rust/Polars sample, built by cargo-lambda.

Its cold build compiles Polars, which takes far longer than every other sample together (the
README gives the figures), so it is built once per machine into the build cache
(`devstack.build_cache`), keyed by its sources, Cargo.lock, the command and the tool versions;
`make fixtures` builds it before the tests, and `udf-runner demo` starts the build in the
background rather than wait for it. A Rust build is not byte-for-byte the same across machines
and toolchains, so no event in `events/` pins its hash: its task (`TASK`) names the bundle
without one, and `payload` pins the hash of the zip actually built.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from devstack.build_cache import (
    CARGO_LAMBDA_RELEASE,
    build_key,
    cache_dir,
    cache_root,
    cached,
    is_locked,
    lock_of,
    locked,
    require_rust,
    run,
    versions,
)

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
CRATE = SAMPLES / "transfer-stats"
#: The sample task, without `bundle.sha256` (`payload` adds the built zip's).
TASK = SAMPLES / "transfer-stats.task.json"
NAME = "transfer-stats"
#: The README's recipe for it.
BUILD = CARGO_LAMBDA_RELEASE
#: Its own target dir: its profile (Cargo.toml) differs from the fixtures', so sharing theirs
#: would save nothing, and would hold their lock for the whole Polars build.
TARGET = "cargo-target-transfer-stats"
#: How long a cold build takes (the README gives the measurements).
COLD_BUILD = "about 10 minutes on 2 cores"


def _key() -> str:
    return build_key(*BUILD, *versions(["rustc", "-V"], ["cargo", "lambda", "--version"]),
                     trees=[CRATE])


def build() -> Path:
    """The sample's `bootstrap.zip`, built now unless the cache holds it for these sources."""
    require_rust()
    return cached(NAME, _key(), _build) / "bootstrap.zip"


def _build(dest: Path) -> None:
    target = cache_root() / TARGET
    with locked(target.with_name(TARGET + ".lock")):
        run(BUILD, cwd=CRATE, env={"CARGO_TARGET_DIR": str(target)})
        shutil.copy2(target / "lambda" / NAME / "bootstrap.zip", dest / "bootstrap.zip")


def payload(bundle: bytes) -> dict[str, Any]:
    """The sample task, pinning `bundle`'s SHA-256."""
    task: dict[str, Any] = json.loads(TASK.read_text())
    task["bundle"]["sha256"] = hashlib.sha256(bundle).hexdigest()
    return task


class Background:
    """The sample's build as `udf-runner demo` sees it: built, building, or started now."""

    def __init__(self) -> None:
        require_rust()
        self.dest = cache_dir(NAME, _key())
        self.log = self.dest.with_name(self.dest.name + ".log")

    def built(self) -> Path | None:
        """The zip, when the cache holds it."""
        zip_path = self.dest / "bootstrap.zip"
        return zip_path if zip_path.is_file() else None

    def start(self) -> bool:
        """Start the build in a process of its own, which outlives this one (its output in
        `log`); False when one is already running."""
        if is_locked(lock_of(self.dest)):
            return False
        self.log.parent.mkdir(parents=True, exist_ok=True)
        # Through a shell that exits at once, so that the build is not below this process: a
        # runner started in this process kills every new process below it, and as a subreaper
        # takes orphans back. Hence also: call this before the runner starts here.
        subprocess.run(["/bin/sh", "-c", '"$0" -m devstack.transfer_stats </dev/null >"$1" 2>&1 &',
                        sys.executable, str(self.log)], start_new_session=True, check=True)
        return True


def main() -> int:
    """`python -m devstack.transfer_stats`: build the sample (or find it in the cache)."""
    started = time.monotonic()
    sys.stdout.write(f"transfer-stats: building {CRATE} with `{' '.join(BUILD)}`\n")
    sys.stdout.flush()
    built = build()
    sys.stdout.write(f"transfer-stats: {built} ({built.stat().st_size} bytes) ready in "
                     f"{time.monotonic() - started:.0f} s\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
