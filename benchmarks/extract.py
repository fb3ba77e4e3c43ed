"""The extract row: `runner.bundle.extract` against Info-ZIP's `unzip -q` on the same zip.

The bundle is FILES files (half JavaScript-like text, half random bytes, log-normal sizes)
zipped by Info-ZIP's `zip -r`, as a user's build would. Both extract into a fresh directory on
the filesystem of the runner's work root; the runner with its configured limits.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import fixtures
from benchmarks.report import Row, ratio_row
from benchmarks.stats import interleaved
from runner.bundle.extract import extract, limits_from
from runner.settings import Settings


def row(work: Path, settings: Settings, files: int, total_bytes: int, runs: int) -> Row:
    """The extract row, built and measured under `work`."""
    source = work / "extract-src"
    source.mkdir()
    unpacked = fixtures.write_tree(source, files, total_bytes)
    bundle = fixtures.info_zip(source, work / "extract.zip")
    shutil.rmtree(source)
    limits = limits_from(settings)
    counter = iter(range(1_000_000))

    def timed(tool: Callable[[Path], object]) -> Callable[[], float]:
        def run() -> float:
            dest = work / f"extract-out-{next(counter)}"
            dest.mkdir()
            try:
                started = time.perf_counter()
                tool(dest)
                return time.perf_counter() - started
            finally:
                shutil.rmtree(dest)
        return run

    def unzip(dest: Path) -> None:
        subprocess.run(["unzip", "-q", str(bundle), "-d", str(dest)], check=True)

    times = interleaved({"ours": timed(lambda dest: extract(bundle, dest, limits)),
                         "unzip": timed(unzip)}, runs=runs)
    zip_bytes = bundle.stat().st_size
    bundle.unlink()
    what = f"runner.bundle.extract, {files + 1} files, {unpacked / 1e6:.0f} MB"
    return ratio_row("extract", what,
                     "unzip -q (Info-ZIP) of the same zip", times, kind="throughput", target=0.8,
                     measured_key="ours", floor_key="unzip", files=files + 1,
                     unpacked_bytes=unpacked, zip_bytes=zip_bytes)
