"""The network row, timed in a warm runner process whose services are reached through
latency-injecting proxies (`benchmarks.latency`): a task with outputs and N input queries, on a
cache miss, against its longest chain of dependent calls.

The floor adds two figures measured in the same rounds:
- the network's critical path: every chain of dependent calls the task needs, made by bare
  clients (urllib3, a SigV4 signature from botocore's signer) through the same proxies, all
  chains started at once: [mint(read) → GET of the bundle], [mint(write)], [query 1] ... [query
  N]; the wall time until the last one is done;
- the task's local work: the same bundle through the handler from the cache, with neither
  outputs nor queries (verify, extract, spawn, invoke, cleanup).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import urllib3

from benchmarks.invoke import handle
from benchmarks.report import Row, ratio_row
from benchmarks.stats import interleaved, summary


class Chains:
    """The task's calls made by bare clients, each chain in its own thread."""

    def __init__(self, payload: dict[str, Any], endpoints: dict[str, str], region: str,
                 max_rows: int) -> None:
        self.payload = payload
        self.endpoints = endpoints
        self.region = region
        self.max_rows = max_rows
        self._headers = {"Authorization": f"Bearer {payload['capability_token']}",
                         "Content-Type": "application/json"}
        queries = payload["inputs"]["queries"]
        self._chains: list[Callable[[], None]] = [
            self._read_chain, self._write_chain,
            *(self._query(sql) for sql in queries.values())]
        self._pool = urllib3.PoolManager(retries=False, maxsize=len(self._chains))
        self._threads = ThreadPoolExecutor(max_workers=len(self._chains))

    def close(self) -> None:
        """Stop the threads and close the connections."""
        self._threads.shutdown()
        self._pool.clear()

    def __call__(self) -> float:
        """Seconds until every chain is done."""
        started = time.perf_counter()
        for future in [self._threads.submit(chain) for chain in self._chains]:
            future.result()
        return time.perf_counter() - started

    def _post(self, url: str, body: dict[str, Any]) -> Any:
        response = self._pool.request("POST", url, body=json.dumps(body).encode(),
                                      headers=self._headers)
        if response.status != 200:
            raise RuntimeError(f"POST {url}: HTTP {response.status} {response.data[:500]!r}")
        return json.loads(response.data)

    def _mint(self, access: str, prefix: str) -> dict[str, str]:
        reply: dict[str, str] = self._post(f"{self.endpoints['minter']}/v1/credentials",
                                           {"access": access, "prefixes": [prefix]})
        return reply

    def _read_chain(self) -> None:
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        bundle = self.payload["bundle"]
        credentials = self._mint("read", bundle["uri"])
        bucket, _, key = bundle["uri"].removeprefix("s3://").partition("/")
        url = f"{self.endpoints['s3']}/{bucket}/{key}"
        request = AWSRequest(method="GET", url=url)
        S3SigV4Auth(Credentials(credentials["access_key_id"], credentials["secret_access_key"],
                                credentials["session_token"]), "s3", self.region).add_auth(request)
        response = self._pool.request("GET", url, headers=dict(request.headers.items()))
        if response.status != 200 or hashlib.sha256(response.data).hexdigest() != bundle["sha256"]:
            raise RuntimeError(f"GET {url}: HTTP {response.status} {response.data[:500]!r}")

    def _write_chain(self) -> None:
        self._mint("write", self.payload["outputs"]["s3_prefix"])

    def _query(self, sql: str) -> Callable[[], None]:
        def run() -> None:
            self._post(f"{self.endpoints['query']}/v1/query", {"sql": sql,
                                                               "max_rows": self.max_rows})
        return run


def row(task: dict[str, Any], local: dict[str, Any], endpoints: dict[str, str], *, runs: int,
        delay_ms: int) -> Row:
    """The network row."""
    from runner.app import SETTINGS

    cached = SETTINGS.work_root / "cache" / f"{task['bundle']['sha256']}.zip"
    timings: list[dict[str, int]] = []

    def miss() -> float:
        cached.unlink(missing_ok=True)
        started = time.perf_counter()
        timings.append(handle(task)["timings_ms"])
        return time.perf_counter() - started

    def warm() -> float:
        started = time.perf_counter()
        if not handle(local)["bundle"]["cache_hit"]:
            raise RuntimeError("the local-work task missed the cache")
        return time.perf_counter() - started

    handle(local)  # the bundle in the cache, for the local-work contender
    chains = Chains(task, endpoints, SETTINGS.region, SETTINGS.query_max_rows)
    try:
        times = interleaved({"task": miss, "chains": chains, "local": warm}, runs=runs,
                            warmup=2)
    finally:
        chains.close()
    times["floor"] = [a + b for a, b in zip(times["chains"], times["local"], strict=True)]
    queries = len(task["inputs"]["queries"])
    return ratio_row(
        "network", f"a cache-miss task with outputs and {queries} input queries, "
        f"{delay_ms} ms injected per call", "its longest chain of dependent calls (bare "
        "clients, all chains at once) + its local work (the same bundle, cached, no calls)",
        times, kind="time", target=1.3, measured_key="task", floor_key="floor",
        delay_ms=delay_ms, queries=queries, chains_ms=summary(times["chains"]),
        local_work_ms=summary(times["local"]),
        task_phases_ms=_median_phases(timings[2:]))


def _median_phases(timings: list[dict[str, int]]) -> dict[str, float]:
    names = {name for timing in timings for name in timing}
    return {name: sorted(timing.get(name, 0) for timing in timings)[len(timings) // 2]
            for name in sorted(names)}
