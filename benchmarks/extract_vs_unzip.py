"""Extraction throughput: `runner.extract` against Info-ZIP `unzip -q` on the same zip.

Builds a bundle of FILES files totalling MB megabytes (half JavaScript-like text, half random
bytes, log-normal sizes) with `zip -r`, then extracts it RUNS times with each tool into a fresh
directory on the same filesystem. The runs alternate so that drift on a shared machine hits both
alike; the figure is the ratio of the medians (issue 8's target: extract >= 0.8x unzip).

    .venv/bin/python benchmarks/extract_vs_unzip.py [--files 5000] [--mb 100] [--runs 9]
        [--workdir DIR] [--json]

Point --workdir at the filesystem that matters (/tmp by default; /dev/shm takes the disk out).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from runner.extract import ExtractLimits, extract

WORDS = [b"const", b"function", b"return", b"module.exports", b"require", b"=>", b"{", b"}",
         b"async", b"await", b"this", b"value", b"undefined", b"null", b"import", b"export"]


def build_tree(root: Path, files: int, total: int, rng: random.Random) -> int:
    """Write the bundle's files under `root`; return their total size."""
    weights = [rng.lognormvariate(0, 1.5) for _ in range(files)]
    scale = total / sum(weights)
    written = 0
    for i, weight in enumerate(weights):
        size = max(1, int(weight * scale))
        path = root / f"pkg{i % 97}" / f"sub{i % 13}" / f"file{i}.js"
        path.parent.mkdir(parents=True, exist_ok=True)
        if i % 2:
            data = rng.randbytes(size)
        else:
            data = b" ".join(rng.choice(WORDS) for _ in range(size // 5 + 1))[:size]
        path.write_bytes(data)
        written += size
    (root / "bootstrap").write_bytes(b"#!/bin/sh\n")
    (root / "bootstrap").chmod(0o755)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = args.workdir / "extract-vs-unzip"
    shutil.rmtree(work, ignore_errors=True)
    (work / "src").mkdir(parents=True)
    try:
        rng = random.Random(7)  # noqa: S311 - reproducible test data, not secrets
        unpacked = build_tree(work / "src", args.files, args.mb * 1_000_000, rng)
        bundle = work / "bundle.zip"
        subprocess.run(["zip", "-q", "-r", str(bundle), "."], cwd=work / "src", check=True)
        limits = ExtractLimits(max_entries=2 * args.files + 100, max_bytes=unpacked + 10,
                               max_ratio=100)
        tools: dict[str, Callable[[Path], object]] = {
            "unzip": lambda dest: subprocess.run(
                ["unzip", "-q", str(bundle), "-d", str(dest)], check=True),
            "extract": lambda dest: extract(bundle, dest, limits),
        }
        times: dict[str, list[float]] = {name: [] for name in tools}
        for run in range(args.runs):
            for name, tool in tools.items():
                dest = work / f"out-{name}-{run}"
                dest.mkdir()
                started = time.perf_counter()
                tool(dest)
                times[name].append(time.perf_counter() - started)
                shutil.rmtree(dest)
        medians = {name: statistics.median(t) for name, t in times.items()}
        bests = {name: min(t) for name, t in times.items()}
        report = {
            "files": args.files + 1, "unpacked_bytes": unpacked,
            "zip_bytes": bundle.stat().st_size, "runs": args.runs,
            "median_s": medians, "best_s": bests,
            "throughput_ratio_median": medians["unzip"] / medians["extract"],
            "throughput_ratio_best": bests["unzip"] / bests["extract"],
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.files + 1} files, {unpacked / 1e6:.0f} MB unpacked, "
          f"{report['zip_bytes']} zip bytes, "
          f"{args.runs} runs each")
    for name in tools:
        print(f"  {name:8s} median {medians[name]:.3f} s  best {bests[name]:.3f} s")
    print(f"  extract/unzip throughput: median {medians['unzip'] / medians['extract']:.2f}x, "
          f"best {bests['unzip'] / bests['extract']:.2f}x")

if __name__ == "__main__":
    main()
