"""The whole suite: build the fixtures, start the local stack, run every row, report.

Rows that time the handler run in fresh worker processes (`benchmarks.worker`) configured as
the deployed function is (its settings from the environment, Powertools' logs and metrics on),
so the runner's process holds nothing of the suite
or of the local stack. The stack (moto's S3 in its own process, the minter, the token issuer)
runs in this process.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import artifact, cli, cold_start, extract, fetch, fixtures, machine, memory
from benchmarks.report import Row
from runner.bundle.extract import extract as extract_zip
from runner.bundle.extract import limits_from
from runner.deadline import Deadline
from runner.platform import S3Reader, ServiceClient
from runner.platform.minter import MinterClient
from runner.settings import Settings

if TYPE_CHECKING:
    from devstack.stack import LocalStack

#: The sandbox uid the benchmarks' runners use: not the default (64200), so that a test suite
#: running at the same time never has its child's files swept by a benchmark (docs/security.md);
#: UDF_RUNNER_SANDBOX_UID picks another, for benchmarks run beside each other.
SANDBOX_UID = int(os.environ.get("UDF_RUNNER_SANDBOX_UID", "64210"))
EVENT = {"hello": "world"}
PAYLOAD_BYTES = 6_000_000
TIMEOUT_MS = 30_000
#: The network row: the latency injected per call, and the task's input queries.
DELAY_MS = 25
QUERIES = {
    "blocks": "select count(*) as n, max(number) as last from blocks",
    "tokens": "select symbol, decimals from erc20_tokens order by symbol",
    "transfers": "select token, count(*) as n from erc20_transfers group by token order by n",
}


@dataclass(frozen=True)
class Sizes:
    """How much each row does."""

    invoke_runs: int
    node_runs: int
    payload_runs: int
    cold_runs: int
    network_runs: int
    cli_runs: int
    byte_runs: int  # verify, fetch, extract
    object_bytes: int  # verify, fetch
    extract_files: int
    extract_bytes: int
    memory_bytes: int
    memory_processes: int


FULL = Sizes(invoke_runs=41, node_runs=31, payload_runs=21, cold_runs=15, network_runs=15,
             cli_runs=9, byte_runs=9,
             object_bytes=100_000_000, extract_files=5000, extract_bytes=100_000_000,
             memory_bytes=200_000_000, memory_processes=3)
QUICK = Sizes(invoke_runs=3, node_runs=3, payload_runs=3, cold_runs=2, network_runs=2,
              cli_runs=1, byte_runs=3,
              object_bytes=4_000_000, extract_files=200, extract_bytes=4_000_000,
              memory_bytes=16_000_000, memory_processes=1)


def runner_environ(work_root: Path, endpoints: Mapping[str, str]) -> dict[str, str]:
    """The environment of a runner process: this one's, less any runner or Powertools
    setting, plus the deployed function's configuration pointed at the local stack."""
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("UDF_RUNNER_", "POWERTOOLS_", "AWS_LAMBDA_", "_X_AMZN"))}
    return {
        **keep, **endpoints,
        "UDF_RUNNER_WORK_ROOT": str(work_root),
        "UDF_RUNNER_SANDBOX_UID": str(SANDBOX_UID),
        "UDF_RUNNER_SANDBOX_GID": str(SANDBOX_UID),
        "UDF_RUNNER_NODE_LAYER": str(fixtures.NODE_LAYER),
        "POWERTOOLS_SERVICE_NAME": "udf-runner",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "POWERTOOLS_METRICS_NAMESPACE": "UdfRunner",
        "POWERTOOLS_LOGGER_LOG_EVENT": "false",
        "PYDANTIC_DISABLE_PLUGINS": "__all__",
    }


@contextmanager
def scratch_dir() -> Iterator[Path]:
    """A private folder in /tmp that the sandbox uid can traverse (never /tmp itself)."""
    base = Path(tempfile.mkdtemp(prefix="udf-runner-bench-"))
    try:
        base.chmod(0o711)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


class Suite:
    """One run of the suite with the local stack up."""

    def __init__(self, base: Path, sizes: Sizes, stack: LocalStack) -> None:
        self.base = base
        self.sizes = sizes
        self.stack = stack
        self.work_root = base / "work"
        self.work_root.mkdir(mode=0o755)
        self.env = runner_environ(self.work_root, stack.access.runner_environ())
        self.settings = Settings.from_env(self.env)
        self.bootstrap = fixtures.build_bootstrap()

    def task(self, name: str, bundle: bytes, runtime: str, handler: str, *,
             queries: Mapping[str, str] | None = None,
             outputs: bool = False) -> dict[str, Any]:
        """A task payload for `bundle`, uploaded under `name`, with a token for it (and for the
        datasets of `queries` and an output prefix, when asked)."""
        from devstack.claims import Grant

        uri = f"s3://udf-bundles/bench/{name}.zip"
        sha256 = self.stack.access.upload_bundle(bundle, uri)
        datasets = sorted({"blocks", "erc20_tokens", "erc20_transfers"}) if queries else []
        prefix = f"s3://udf-outputs/bench/{name}/" if outputs else None
        token = self.stack.issue_token(Grant.for_task(
            task_id=f"bench-{name}", attempt=1, bundle_uri=uri, bundle_sha256=sha256,
            datasets=datasets, output_prefix=prefix))
        return {"schema_version": 1, "task_id": f"bench-{name}", "attempt": 1,
                "capability_token": token,
                "bundle": {"uri": uri, "sha256": sha256, "runtime": runtime, "handler": handler},
                "event": EVENT, "timeout_ms": TIMEOUT_MS,
                **({"inputs": {"datasets": datasets, "queries": dict(queries)}}
                   if queries else {}),
                **({"outputs": {"s3_prefix": prefix}} if prefix else {})}

    def floor_root(self, name: str, bundle: bytes) -> Path:
        """The bundle extracted where the floors start their child."""
        zip_path = self.base / f"{name}.zip"
        zip_path.write_bytes(bundle)
        root = self.base / f"floor-{name}"
        root.mkdir(mode=0o755)
        extract_zip(zip_path, root, limits_from(self.settings))
        zip_path.unlink()
        return root

    def worker(self, job: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
        """Run `job` in a fresh runner process; its result."""
        job_path, out_path = self.base / "job.json", self.base / "result.json"
        job_path.touch(mode=0o600)  # it holds capability tokens (of the local stack)
        job_path.write_text(json.dumps(job))
        done = subprocess.run([sys.executable, "-m", "benchmarks.worker", str(job_path),
                               str(out_path)], env=dict(env), cwd=fixtures.REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              check=False)
        job_path.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"benchmark worker failed ({done.returncode}):\n{done.stderr}")
        result: dict[str, Any] = json.loads(out_path.read_text())
        out_path.unlink()
        return result

    def invoke_rows(self) -> dict[str, Any]:
        """warm invoke, node, payload, the phases and the containment costs; then, in another
        fresh process, the step-by-step breakdown of a warm task."""
        provided = fixtures.provided_bundle(self.bootstrap)
        node = fixtures.node_bundle()
        job = {
            "kind": "invoke", "runs": self.sizes.invoke_runs,
            "node_runs": self.sizes.node_runs, "payload_runs": self.sizes.payload_runs,
            "provided": self.task("provided", provided, "provided", "trivial"),
            "provided_root": str(self.floor_root("provided", provided)),
            "node": self.task("node", node, "nodejs", "index.handler"),
            "node_root": str(self.floor_root("node", node)),
            "payload": self.task("payload", provided, "provided", f"bytes:{PAYLOAD_BYTES}"),
        }
        result = self.worker(job, self.env)
        return {**result, **self.worker({**job, "kind": "breakdown"}, self.env)}

    def cold_rows(self) -> list[Row]:
        """cold start, cold task, cold memory: the built function under awslambdaric."""
        built = artifact.build(self.base / "artifact")
        payload = self.task("cold", fixtures.provided_bundle(self.bootstrap), "provided",
                            "trivial")
        starts = cold_start.ColdStarts(built, self.env, self.base, lambda: payload)
        try:
            samples = starts.measure(self.sizes.cold_runs)
        finally:
            starts.close()
        profile = cold_start.import_profile(built, self.env, self.base / "cold-profile")
        return cold_start.rows(samples, profile)

    def network_row(self) -> Row:
        """network: a warm worker whose services are behind latency-injecting proxies."""
        provided = fixtures.provided_bundle(self.bootstrap)
        task = self.task("network", provided, "provided", "trivial", queries=QUERIES,
                         outputs=True)
        local = self.task("network-local", provided, "provided", "trivial")
        access = self.stack.access
        with latency_proxies(DELAY_MS, [access.minter_url, access.query_url,
                                        access.s3_endpoint_url]) as (minter, query, s3):
            env = {**self.env, "UDF_RUNNER_MINTER_URL": minter, "UDF_RUNNER_QUERY_URL": query,
                   "UDF_RUNNER_S3_ENDPOINT_URL": s3}
            result = self.worker({"kind": "network", "runs": self.sizes.network_runs,
                                  "task": task, "local": local, "delay_ms": DELAY_MS,
                                  "endpoints": {"minter": minter, "query": query, "s3": s3}},
                                 env)
        return Row.from_json(result["row"])

    def cli_rows(self) -> list[Row]:
        """cli devstack, cli no stack: `udf-runner invoke` as a developer runs it."""
        bundle_dir = self.floor_root("cli", fixtures.provided_bundle(self.bootstrap))
        work_root = self.base / "cli-work"
        work_root.mkdir(mode=0o755)
        env = {**{k: v for k, v in self.env.items()
                  if not k.startswith(("UDF_RUNNER_", "POWERTOOLS_"))},
               "UDF_RUNNER_WORK_ROOT": str(work_root),
               "UDF_RUNNER_SANDBOX_UID": str(SANDBOX_UID),
               "UDF_RUNNER_SANDBOX_GID": str(SANDBOX_UID)}
        stack_env = self.stack.access.to_environ()
        host = stack_env["UDF_DEVSTACK_ISSUER_URL"].removeprefix("http://")
        return cli.rows(bundle_dir, env, stack_env, stack_host=host, cwd=fixtures.REPO,
                        runs=self.sizes.cli_runs)

    def byte_rows(self) -> list[Row]:
        """verify, verify cached, fetch and extract."""
        data = os.urandom(self.sizes.object_bytes)
        payload = self.task("object", data, "provided", "trivial")
        minter = MinterClient(ServiceClient(self.settings.minter_url,
                                            payload["capability_token"]))
        region, endpoint_url = self.settings.region, self.settings.s3_endpoint_url
        obj = fetch.Object(uri=payload["bundle"]["uri"], sha256=payload["bundle"]["sha256"],
                           data=data, s3=S3Reader(region=region, endpoint_url=endpoint_url),
                           credentials=minter.mint("read", [payload["bundle"]["uri"]],
                                                   Deadline.after(30)))
        downloads = self.base / "downloads"
        downloads.mkdir()
        runs = self.sizes.byte_runs
        return [*fetch.verify_rows(obj, downloads, runs),
                fetch.fetch_row(obj, downloads, runs, region=region, endpoint_url=endpoint_url),
                extract.row(self.base, self.settings, self.sizes.extract_files,
                            self.sizes.extract_bytes, runs)]

    def memory_row(self) -> Row:
        """memory, in as many fresh processes as the sizes say, each with its own cache."""
        warmup = self.task("memory-warmup", fixtures.zip_bytes(
            {"bootstrap": (self.bootstrap.read_bytes(), 0o755), "warmup": (b"1", 0o644)}),
            "provided", "trivial")
        large = self.task("memory", fixtures.large_bundle(self.bootstrap,
                                                          self.sizes.memory_bytes),
                          "provided", "trivial")
        growths = []
        for index in range(self.sizes.memory_processes):
            work_root = self.base / f"memory-{index}"
            work_root.mkdir(mode=0o755)
            env = {**self.env, "UDF_RUNNER_WORK_ROOT": str(work_root)}
            result = self.worker({"kind": "memory", "warmup": warmup, "payload": large}, env)
            growths.append((result["growth_mb"], result["details"]))
            shutil.rmtree(work_root)
        return memory.row(growths)


#: The groups of rows, each measured on its own (`--only`).
GROUPS = ("cold", "network", "cli", "invoke", "bytes", "memory")
ORDER = ["cold start", "cold task", "cold memory", "network", "cli devstack", "cli no stack",
         "warm invoke", "verify", "verify, cached", "extract", "fetch", "payload", "node",
         "memory"]


def run(sizes: Sizes, mode: str, groups: tuple[str, ...] = GROUPS) -> dict[str, Any]:
    """Run the suite (or some groups of rows); the report (machine, rows, phases, containment
    costs, the breakdown of a warm task)."""
    from devstack.stack import LocalStack

    started = time.time()
    rows: list[Row] = []
    invoked: dict[str, Any] = {}
    with scratch_dir() as base, LocalStack.start() as stack:
        suite = Suite(base, sizes, stack)
        described = machine.describe(suite.work_root, fixtures.NODE_LAYER / "bin" / "node")
        if "cold" in groups:
            rows += suite.cold_rows()
        if "network" in groups:
            rows.append(suite.network_row())
        if "cli" in groups:
            rows += suite.cli_rows()
        if "invoke" in groups:
            invoked = suite.invoke_rows()
            rows += [Row.from_json(row) for row in invoked["rows"]]
        if "bytes" in groups:
            rows += suite.byte_rows()
        if "memory" in groups:
            rows.append(suite.memory_row())
    rows.sort(key=lambda row: ORDER.index(row.name))
    return {
        "mode": mode, "started_unix": round(started), "seconds": round(time.time() - started),
        "machine": described, "sandbox_uid": SANDBOX_UID, "sizes": asdict(sizes),
        "groups": list(groups), "rows": [row.to_json() for row in rows],
        "phases_ms": invoked.get("phases", {}),
        "containment_ms": invoked.get("containment_ms", {}),
        "breakdown_ms": invoked.get("breakdown_ms", {}),
    }


@contextmanager
def latency_proxies(delay_ms: int, urls: list[str]) -> Iterator[list[str]]:
    """`benchmarks.latency` in its own process, in front of `urls`; the proxies' URLs."""
    proxy = subprocess.Popen([sys.executable, "-m", "benchmarks.latency", str(delay_ms), *urls],
                             cwd=fixtures.REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proxy.stdout is not None
        proxied: list[str] = json.loads(proxy.stdout.readline())
        yield proxied
    finally:
        proxy.kill()
        proxy.wait()
        if proxy.stdout:
            proxy.stdout.close()


def incomplete(report: Mapping[str, Any]) -> list[str]:
    """Rows that produced no usable number (what the quick mode checks)."""
    return [row["name"] for row in report["rows"]
            if not (isinstance(row["value"], float | int) and math.isfinite(row["value"])
                    and row["value"] > 0)]
