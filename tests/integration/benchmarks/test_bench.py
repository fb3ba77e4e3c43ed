"""The benchmarks' floors are honest: the bare Runtime API server really serves one invocation
to the same clients the runner serves (the Rust bootstrap, the official Node client), whole;
and the suite's bookkeeping compares what it says it compares.

Timings are not asserted here (machines are noisy): `make bench-quick` checks that every row
yields a figure, `make bench` produces them.
"""

from __future__ import annotations

import http.client
import importlib
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from benchmarks import artifact, breakdown, cold_start, fixtures, suite
from benchmarks.floor import serve_one
from benchmarks.report import ratio_row
from benchmarks.stats import interleaved
from runner import runtimes
from runner.containment import WorkDirs
from runner.runtimes import nodejs
from runner.settings import Settings
from tests.support.scripted_server import Reply, scripted


@pytest.fixture(scope="module")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixtures.build_bootstrap(tmp_path_factory.mktemp("cargo"))


def test_the_floor_serves_the_rust_bootstrap_one_invocation(bootstrap: Path,
                                                            tmp_path: Path) -> None:
    served = serve_one([str(bootstrap)], {"_HANDLER": "trivial"}, tmp_path, b'{"a":1}')
    assert served.response == b'{"ok":true}'
    assert served.seconds > 0


def test_the_floor_reads_a_large_response_whole(bootstrap: Path, tmp_path: Path) -> None:
    size = 1_000_000
    served = serve_one([str(bootstrap)], {"_HANDLER": f"bytes:{size}"}, tmp_path, b"{}",
                       stop=False)
    assert len(served.response) == size
    assert json.loads(served.response) == "x" * (size - 2)
    (line,) = served.stdout.decode().splitlines()
    assert line.startswith("POST_NS ")
    assert int(line.split()[1]) > 0


def test_the_floor_serves_the_node_client_with_the_runners_argv_and_env(
        tmp_path: Path, work_root: Path) -> None:
    if not (fixtures.NODE_LAYER / "bin" / "node").exists():
        pytest.fail("the Node layer is not built; run `make setup`")
    (tmp_path / "index.js").write_bytes((fixtures.NODE_HANDLER / "index.js").read_bytes())
    settings = Settings.from_env({"UDF_RUNNER_WORK_ROOT": str(work_root),
                                  "UDF_RUNNER_NODE_LAYER": str(fixtures.NODE_LAYER)})
    dirs = WorkDirs(task_root=tmp_path, home=tmp_path, tmp=tmp_path)
    task = runtimes.TaskEnvironment(task_id="bench", attempt=1, token="bench-token")
    spec = nodejs.child_spec(dirs, "index.handler", task, settings)
    served = serve_one(spec.argv, spec.env, tmp_path, b'{"hello":"world"}')
    assert json.loads(served.response) == {"ok": True, "echo": {"hello": "world"}}


def test_runs_alternate_and_the_ratio_compares_medians() -> None:
    order: list[str] = []
    values = {"a": iter([1.0, 3.0, 2.0, 9.0]), "b": iter([1.0, 1.0, 1.0, 1.0])}

    def contender(name: str) -> float:
        order.append(name)
        return next(values[name])

    times = interleaved({"a": lambda: contender("a"), "b": lambda: contender("b")},
                        runs=3, warmup=1)
    assert order == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert times == {"a": [3.0, 2.0, 9.0], "b": [1.0, 1.0, 1.0]}
    row = ratio_row("r", "ours", "floor", times, kind="time", target=1.5,
                    measured_key="a", floor_key="b")
    assert (row.value, row.passed) == (3.0, False)
    throughput = ratio_row("r", "ours", "floor", times, kind="throughput", target=0.3,
                           measured_key="a", floor_key="b")
    assert (round(throughput.value, 3), throughput.passed) == (0.333, True)


def test_the_cold_start_harness_serves_the_bare_handler_under_the_runtime_client(
        tmp_path: Path) -> None:
    # The dev venv has awslambdaric, so its interpreter stands in for the built artifact.
    here = artifact.Artifact(python=Path(sys.executable), task_root=tmp_path,
                             runtime_client=tmp_path)
    env = {**cold_start.lambda_environ(here, {}, tmp_path), "_HANDLER": cold_start.BARE}
    stub = cold_start.RuntimeApiStub()
    try:
        sample = stub.cold_start([sys.executable, "-m", "awslambdaric", cold_start.BARE], env,
                                 b'{"a":1}', tmp_path / "log", tmp_path)
    finally:
        stub.close()

    assert json.loads(sample.response) == {"a": 1}
    assert 0 < sample.next_s <= sample.response_s
    assert sample.peak_rss_mib > 1
    assert sample.cpu_s > 0


def test_the_latency_proxy_delays_a_request_once_even_in_two_writes() -> None:
    delay_ms = 300
    with scripted(Reply(200, {"ok": True})) as service, \
            suite.latency_proxies(delay_ms, [service.url]) as (proxied,):
        where = urlsplit(proxied)
        connection = http.client.HTTPConnection(where.hostname or "", where.port, timeout=10)
        started = time.perf_counter()
        connection.putrequest("POST", "/x")
        connection.putheader("Content-Length", "2")
        connection.endheaders()  # the headers in one write, the body in another, as urllib3 does
        connection.send(b"{}")
        answer = json.loads(connection.getresponse().read())
        elapsed = time.perf_counter() - started
        connection.close()

    assert answer == {"ok": True}
    assert delay_ms / 1000 <= elapsed < 2 * delay_ms / 1000
    assert service.seen[0].body == b"{}"


def test_every_step_of_the_breakdown_names_code_that_exists() -> None:
    # A rename in the runner must fail here, not first in `make bench-quick`.
    for module_name, path, _label in breakdown.STEPS:
        owner: object = importlib.import_module(module_name)
        for part in path.split("."):
            owner = getattr(owner, part)
        assert callable(owner)
