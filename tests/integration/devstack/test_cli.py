"""`udf-runner`, the one local entry point, as a user runs it: a real process, real files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from devstack import transfer_stats
from devstack.build_cache import lock_of, locked
from devstack.bundles import zip_folder
from devstack.demo import EXPECTED
from devstack.stack import LocalStack
from runner.containment import procfs
from tests.support.tasks import PIPELINE_BOOTSTRAP

REPO = Path(__file__).resolve().parents[3]
LIFECYCLE = REPO / "tests" / "fixtures" / "bash" / "lifecycle"
UDF_RUNNER = REPO / ".venv" / "bin" / "udf-runner"


def _run(*args: str, stack: LocalStack | None = None, stdin: str | None = None,
         work_root: Path | None = None,
         extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ) | (extra_env or {})
    if stack is not None:
        env |= stack.access.to_environ()
    if work_root is not None:
        env["UDF_RUNNER_WORK_ROOT"] = str(work_root)
    return subprocess.run([str(UDF_RUNNER), *args], input=stdin, capture_output=True,
                          text=True, env=env, check=False, timeout=300)


def _result(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(done.stdout)


def test_invoke_runs_a_folder_and_prints_only_the_result(local_stack: LocalStack,
                                                         work_root: Path) -> None:
    done = _run("invoke", str(PIPELINE_BOOTSTRAP), "--handler", "echo", "--event", "-", "--json",
                "--env", "USER_SETTING=from-cli", stack=local_stack, stdin='{"k": [1, 2]}',
                work_root=work_root)

    assert done.returncode == 0, done.stderr
    result = _result(done)
    assert result["response"]["event"] == {"k": [1, 2]}
    assert result["response"]["env"]["USER_SETTING"] == "from-cli"
    assert {"init", "invoke", "total"} <= result["timings_ms"].keys()


def test_invoke_runs_a_zip_and_exits_1_when_the_function_fails(local_stack: LocalStack,
                                                               work_root: Path,
                                                               tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(zip_folder(PIPELINE_BOOTSTRAP))

    done = _run("invoke", str(bundle), "--handler", "error", "--json", stack=local_stack,
                work_root=work_root)

    assert done.returncode == 1
    assert _result(done)["error"]["type"] == "Function.Error"


@pytest.mark.parametrize("args", [
    ["invoke", "/no/such/bundle.zip"],
    ["invoke", str(PIPELINE_BOOTSTRAP), "--runtime", "python"],
    ["invoke", str(PIPELINE_BOOTSTRAP), "--event", "/no/such/event.json"],
    ["invoke", str(PIPELINE_BOOTSTRAP), "--event", str(REPO / "README.md")],
    ["invoke", str(PIPELINE_BOOTSTRAP), "--env", "NO_EQUALS_SIGN"],
    ["invoke", str(REPO / ".venv")],  # holds symlinks, which a Lambda bundle cannot carry
    ["run-task", "/no/such/payload.json"],
    ["frobnicate"],
])
def test_bad_usage_exits_2(args: list[str]) -> None:
    mark = {"UDF_TEST_MARK": os.urandom(8).hex()}
    done = _run(*args, extra_env=mark)

    assert done.returncode == 2
    # `invoke` and `run-task` start the embedded S3 before checking their usage: it is gone.
    assert not _processes_with(mark)
    assert done.stdout == ""
    assert "udf-runner" in done.stderr


@pytest.mark.parametrize(("args", "flag"), [
    (["--timeout-ms", "0"], "--timeout-ms"),
    (["--env", "AWS_REGION=eu-west-1"], "--env"),
    (["--env", "NODE_OPTIONS=--inspect"], "--env"),
    (["--runtime", "nodejs", "--handler", "index"], "--handler"),  # no dot
    (["--runtime", "nodejs"], "--handler"),  # no handler at all
    (["--event", str(REPO / "README.md")], "--event"),
    (["--event", "/no/such/event.json"], "--event"),
    (["--dataset", "No-Such"], "--dataset"),
])
def test_flags_the_payload_refuses_are_bad_usage_naming_the_flag(args: list[str],
                                                                 flag: str) -> None:
    done = _run("invoke", str(PIPELINE_BOOTSTRAP), "--json", *args)  # no stack: refused first

    assert done.returncode == 2, done.stdout
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"udf-runner: {flag}")
    assert "Traceback" not in done.stderr


def test_a_missing_bundle_path_is_bad_usage() -> None:
    done = _run("invoke", "/no/such/bundle.zip")

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("udf-runner: bundle /no/such/bundle.zip: no such file or folder "
                           "(give the bundle's zip, or the folder to zip)\n")


def test_ctrl_c_stops_the_run_cleanly(local_stack: LocalStack, work_root: Path) -> None:
    env = {**os.environ, **local_stack.access.to_environ(),
           "UDF_RUNNER_WORK_ROOT": str(work_root)}
    with subprocess.Popen([str(UDF_RUNNER), "invoke", str(LIFECYCLE), "--handler", "hang",
                           "--timeout-ms", "600000"], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stderr is not None
        pid = None
        for line in process.stderr:  # the bundle's own lines, forwarded as it prints them
            if "] PID " in line:
                pid = int(line.rpartition("PID ")[2])
            if "took the event" in line:
                break
        assert pid is not None
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 130
    assert stdout == ""
    assert stderr == "udf-runner: interrupted\n"
    assert not [p for p in procfs.processes() if pid in (p.pgrp, p.session)]
    assert not list((work_root / "attempts").iterdir())


def test_run_task_runs_a_sample_payload(local_stack: LocalStack, work_root: Path) -> None:
    done = _run("run-task", str(REPO / "events" / "provided-handler-error.json"), "--json",
                stack=local_stack, work_root=work_root)

    assert done.returncode == 1
    assert _result(done)["error"]["type"] == "Function.Error"


def test_token_gives_a_payload_a_token_from_the_running_stack(local_stack: LocalStack) -> None:
    done = _run("token", str(REPO / "events" / "provided-success.json"), stack=local_stack)

    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    claims = local_stack.verifier.verify(payload["capability_token"])
    assert claims.task_id == payload["task_id"]
    assert claims.bundle_sha256 == payload["bundle"]["sha256"]


def test_token_without_a_running_stack_is_bad_usage() -> None:
    done = _run("token", str(REPO / "events" / "provided-success.json"))

    assert done.returncode == 2
    assert "udf-runner devstack" in done.stderr


def _free_ports(count: int) -> int:
    """A base port with `count` consecutive ports free right now."""
    for base in range(24_500, 30_000, 7):
        try:
            for port in range(base, base + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range")


def test_the_stack_can_listen_on_fixed_ports() -> None:
    base = _free_ports(4)
    with LocalStack.start(base_port=base) as stack:
        urls = [stack.access.s3_endpoint_url, stack.access.minter_url, stack.access.query_url,
                stack.access.issuer_url]

    assert urls == [f"http://127.0.0.1:{base + offset}" for offset in range(4)]


def test_demo_the_readmes_main_command_runs_every_sample_task(local_stack: LocalStack,
                                                              work_root: Path,
                                                              transfer_stats_zip: Path) -> None:
    done = _run("demo", stack=local_stack, work_root=work_root)

    assert done.returncode == 0, done.stdout + done.stderr
    count = len(EXPECTED) + 1  # the Rust/Polars sample, built (transfer_stats_zip)
    assert f"{count} of {count} sample tasks ended as expected" in done.stdout
    assert f"== {transfer_stats.TASK.name}: succeeded [ok]" in done.stdout


def test_demo_does_not_wait_for_a_polars_build_under_way(local_stack: LocalStack,
                                                          work_root: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # a cache without the sample's build
    build = transfer_stats.Background()

    with locked(lock_of(build.dest)):  # as a build started by an earlier `make run` holds it
        done = _run("demo", stack=local_stack, work_root=work_root)

    assert done.returncode == 0, done.stdout + done.stderr
    count = len(EXPECTED)
    assert f"{count} of {count} sample tasks ended as expected" in done.stdout
    assert ("transfer-stats (Rust/Polars): still building in the background; its log: "
            f"{build.log} (it ends with `ready in …` when done). Run `make run` again then to "
            "see the sample.") in done.stdout
    assert transfer_stats.TASK.name not in done.stdout


def _processes_with(variables: dict[str, str]) -> list[int]:
    """The processes whose environment holds `variables` (the command's children inherit it)."""
    wanted = [f"{name}={value}".encode() for name, value in variables.items()]
    found = []
    for pid in procfs.pids():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:  # gone, or not ours to read
            continue
        if all(item in environ for item in wanted):
            found.append(pid)
    return found
