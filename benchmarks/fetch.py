"""The verify and fetch rows: the bundle streamed from the local stack's S3 (moto, in its own
process) by `runner.bundle.fetch`, with the credentials the minter gives the task.

- verify: the time spent inside the SHA-256 updates of a real fetch (the hasher
  `runner.bundle.fetch` makes is wrapped to time its `update` calls), against `hashlib.sha256`
  over the same bytes in memory; and, for a warm task, the cache's re-hash of the stored zip
  (`runner.bundle.verify.sha256_file`) against the same. Ratios of throughput: floor time / ours.
- fetch: `runner.bundle.fetch.fetch` (the signed streaming GET with the task's credentials, the
  hash, the file) against boto3's `download_file` to a file followed by `sha256sum` of it.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.report import Row, ratio_row
from benchmarks.stats import interleaved
from runner.bundle import fetch as runner_fetch
from runner.bundle import sha256_file
from runner.bundle.fetch import split_uri
from runner.deadline import Deadline
from runner.platform import S3Reader, ScopedCredentials


@dataclass(frozen=True)
class Object:
    """The bundle in S3, who may read it, and the S3 reader (one connection pool, as a
    `Pipeline` keeps for its execution environment)."""

    uri: str
    sha256: str
    data: bytes
    credentials: ScopedCredentials
    s3: S3Reader


class _TimedSha256:
    """`hashlib.sha256()` that adds the time of each update to `spent`."""

    def __init__(self, spent: list[float]) -> None:
        self._hash = hashlib.sha256()
        self._spent = spent

    def update(self, data: bytes) -> None:
        started = time.perf_counter()
        self._hash.update(data)
        self._spent[0] += time.perf_counter() - started

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class _TimedHashlib:
    """Stands in for the `hashlib` module inside `runner.bundle.fetch` while a fetch is timed."""

    def __init__(self, spent: list[float]) -> None:
        self._spent = spent

    def sha256(self) -> _TimedSha256:
        return _TimedSha256(self._spent)


@contextmanager
def _timed_hashing(spent: list[float]) -> Iterator[None]:
    namespace = vars(runner_fetch)
    original = namespace["hashlib"]
    namespace["hashlib"] = _TimedHashlib(spent)
    try:
        yield
    finally:
        namespace["hashlib"] = original


def _runner_fetch(obj: Object, dest: Path) -> Path:
    deadline = Deadline.after(300)
    fetched = runner_fetch.fetch(obj.uri, obj.sha256, s3=obj.s3, credentials=obj.credentials,
                                 dest_dir=dest, max_bytes=len(obj.data) + 1, deadline=deadline)
    return fetched.path


def _in_memory(data: bytes) -> Callable[[], float]:
    def run() -> float:
        started = time.perf_counter()
        hashlib.sha256(data).hexdigest()
        return time.perf_counter() - started
    return run


def verify_rows(obj: Object, work: Path, runs: int) -> list[Row]:
    """The verify row (while fetching) and the cached re-hash row."""
    def while_fetching() -> float:
        spent = [0.0]
        with _timed_hashing(spent):
            _runner_fetch(obj, work).unlink()
        return spent[0]

    stored = _runner_fetch(obj, work)
    try:
        def rehash() -> float:
            started = time.perf_counter()
            if sha256_file(stored) != obj.sha256:
                raise RuntimeError("the stored copy does not match")
            return time.perf_counter() - started

        streamed = interleaved({"ours": while_fetching, "memory": _in_memory(obj.data)},
                               runs=runs)
        cached = interleaved({"ours": rehash, "memory": _in_memory(obj.data)}, runs=runs)
    finally:
        stored.unlink()
    size = f"{len(obj.data) / 1e6:.0f} MB"
    return [
        ratio_row("verify", f"SHA-256 while fetching {size} (time in the hash updates)",
                  "hashlib.sha256 over the same bytes in memory", streamed, kind="throughput",
                  target=0.9, measured_key="ours", floor_key="memory", bytes=len(obj.data)),
        ratio_row("verify, cached", f"re-hash of the cached {size} zip (runner.bundle.cache)",
                  "hashlib.sha256 over the same bytes in memory", cached, kind="throughput",
                  target=0.9, measured_key="ours", floor_key="memory", bytes=len(obj.data)),
    ]


def fetch_row(obj: Object, work: Path, runs: int, *, region: str, endpoint_url: str) -> Row:
    """The fetch row."""
    import boto3

    client = boto3.session.Session().client(
        "s3", region_name=region, endpoint_url=endpoint_url,
        aws_access_key_id=obj.credentials.access_key_id,
        aws_secret_access_key=obj.credentials.secret_access_key,
        aws_session_token=obj.credentials.session_token)
    bucket, key = split_uri(obj.uri)

    def ours() -> float:
        started = time.perf_counter()
        path = _runner_fetch(obj, work)
        seconds = time.perf_counter() - started
        path.unlink()
        return seconds

    def boto3_then_sha256sum() -> float:
        path = work / "download_file.zip"
        started = time.perf_counter()
        client.download_file(bucket, key, str(path))
        digest = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True,
                                check=True).stdout.split()[0]
        seconds = time.perf_counter() - started
        path.unlink()
        if digest != obj.sha256:
            raise RuntimeError("download_file fetched other bytes")
        return seconds

    times = interleaved({"ours": ours, "floor": boto3_then_sha256sum}, runs=runs)
    details: dict[str, Any] = {"bytes": len(obj.data)}
    return ratio_row("fetch", f"runner.bundle.fetch of {len(obj.data) / 1e6:.0f} MB from moto "
                     "(streamed, hashed, written)", "boto3 download_file, then sha256sum",
                     times, kind="throughput", target=1.0, measured_key="ours", floor_key="floor",
                     **details)
