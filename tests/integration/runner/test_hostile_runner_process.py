"""Hostile bundles against a runner in a process of its own (`python -m
tests.support.containment_harness`), for what cannot be shown inside pytest:

- a secret in the runner's initial environment (what /proc/<pid>/environ keeps), read for by a
  bundle, under a root runner (separate uid) and under a runner that is not root (same uid, as
  in Lambda, where only PR_SET_DUMPABLE protects it; a control run without it shows the test
  would see the leak);
- a same-uid runner in Lambda mode killing everything new of its uid and wiping its uid's files
  in the scratch dir, and in local mode leaving a developer's /tmp alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runner.containment import procfs, reaper, sysvipc
from runner.containment.removal import remove_tree
from runner.settings import Settings
from tests.support.containment_harness import Runner

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="starting runners as root and as another uid needs root")

REPO = Path(__file__).resolve().parents[3]
#: The uid of the same-uid runner (and so of its child): not the sandbox uid, used by nothing.
RUNNER_UID = 64201


@dataclass(frozen=True)
class Place:
    """Directories for a runner process: its work root and a scratch dir standing in for /tmp."""

    work_root: Path
    scratch: Path


@pytest.fixture
def place() -> Iterator[Place]:
    base = Path(tempfile.mkdtemp(prefix="udf-runner-process-"))
    try:
        base.chmod(0o711)
        work, tmp = base / "work", base / "scratch"
        work.mkdir()
        os.chown(work, RUNNER_UID, RUNNER_UID)
        tmp.mkdir()
        tmp.chmod(0o1777)
        yield Place(work, tmp)
    finally:
        remove_tree(base)


@pytest.fixture
def canary() -> str:
    return f"canary-{uuid.uuid4().hex}"


def run_runner(job: dict[str, Any], canary: str,
               returncode: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run a runner process with `canary` in its initial environment; its controls line and
    one result per event it finished."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.containment_harness"], input=json.dumps(job),
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "UDF_TEST_CANARY": canary},
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == returncode, done.stderr
    controls, *results = (json.loads(line) for line in done.stdout.splitlines())
    assert canary not in done.stderr
    return controls["controls"]["containment"], results


def _same_uid_job(place: Place, environment: str, events: list[dict[str, Any]],
                  **extra: Any) -> dict[str, Any]:
    return {"settings": {"work_root": str(place.work_root), "scratch_dirs": [str(place.scratch)],
                         "execution_environment": environment},
            "drop_to": [RUNNER_UID, RUNNER_UID], "events": events, **extra}


def _uid_processes(uid: int) -> list[int]:
    return [p.pid for p in procfs.processes() if p.uid == uid and not p.is_zombie]


ENVIRON = {"case": "environ", "marker": "UDF_TEST_CANARY"}


def test_a_bundle_finds_no_secret_of_a_root_runner(place: Place, canary: str) -> None:
    job = {"settings": {"work_root": str(place.work_root), "scratch_dirs": [str(place.scratch)]},
           "events": [ENVIRON, {"case": "ok"}]}
    controls, (environ, after) = run_runner(job, canary)
    assert controls["isolation"] == "separate-uid"
    got = environ["response"]["got"]
    for pid in environ["response"]["above"]:  # the spawner and the runner
        assert got[f"/proc/{pid}/environ"].startswith("PermissionError")
        assert got[f"/proc/{pid}/mem"].startswith("PermissionError")
    assert got["/proc/1/environ"].startswith("PermissionError")
    assert canary not in json.dumps(environ)
    assert after["response"]["ok"]


def test_a_same_uid_bundle_cannot_read_the_non_dumpable_runner(place: Place,
                                                               canary: str) -> None:
    controls, (environ, after) = run_runner(
        _same_uid_job(place, "lambda", [ENVIRON, {"case": "ok"}]), canary)
    assert controls["isolation"] == "lambda"
    assert controls["dumpable_off"] is True
    response = environ["response"]
    assert response["uid"] == RUNNER_UID  # the same uid as the runner
    for pid in response["above"]:  # the spawner and the runner
        assert response["got"][f"/proc/{pid}/environ"].startswith("PermissionError")
        assert response["got"][f"/proc/{pid}/mem"].startswith("PermissionError")
    assert canary not in json.dumps(environ)
    assert after["response"]["ok"]


def test_without_pr_set_dumpable_the_same_uid_bundle_reads_the_secret(place: Place,
                                                                      canary: str) -> None:
    # The control: the same run with the runner made dumpable again after cold start.
    _, (environ, _) = run_runner(
        _same_uid_job(place, "lambda", [ENVIRON, {"case": "ok"}], undo_hardening=True), canary)
    response = environ["response"]
    spawner, runner = response["above"]
    assert canary in response["got"][f"/proc/{runner}/environ"]
    assert canary not in response["got"][f"/proc/{spawner}/environ"]  # it holds none


def test_a_same_uid_runner_in_lambda_kills_and_wipes_everything_new_of_its_uid(
        place: Place, canary: str) -> None:
    # Laid out as in Lambda: the work root and its bundle cache inside the scratch dir (/tmp).
    work_root = place.scratch / "udf-runner"
    cached = work_root / "cache" / f"{'ab' * 32}.zip"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"PK\x05\x06" + bytes(18))
    for path in (work_root, cached.parent, cached):
        os.chown(path, RUNNER_UID, RUNNER_UID)
    marker, tag = place.scratch / "marker", uuid.uuid4().hex
    ok: dict[str, Any] = {"case": "ok"}
    events: list[dict[str, Any]] = [
        {"case": "daemon", "marker": str(marker), "delay": 2}, ok,
        {"case": "fork_storm", "count": 500}, ok,
        {"case": "litter", "tag": tag, "dirs": [str(place.scratch), str(work_root)]}, ok,
        {"case": "ignore_term"}, ok,
        {"case": "sysv_ipc"}, ok,
        {"case": "rewrite_cache", "path": str(cached)}, ok,
        {"case": "zombie_leader", "marker": str(marker), "delay": 2}, ok,
        {"case": "deep_tree", "depth": 1200, "dirs": [str(place.scratch), "$HOME"]}, ok]
    job = _same_uid_job(place, "lambda", events, keep=[str(cached.parent)])
    job["settings"]["work_root"] = str(work_root)
    _, results = run_runner(job, canary)
    assert [r["error_type"] for r in results] == [None] * len(events)
    assert all(r["response"]["ok"] for r in results[1::2])
    storm = results[2]["response"]
    assert storm["refused"] == "EAGAIN"  # bounded, and the runner still had room for the next
    # Everything of the uid in the scratch dir is gone (litter, attempts, planted files) but
    # the runner's cache, which the same uid could rewrite: hence runner.bundle.cache re-hashes.
    assert results[10]["response"] == {"rewrite": "done", "replace": "done"}
    assert [str(p.relative_to(place.scratch)) for p in place.scratch.rglob("*")] == [
        "udf-runner", "udf-runner/cache", f"udf-runner/cache/{cached.name}"]
    assert [o for o in sysvipc.objects() if RUNNER_UID in (o.uid, o.cuid)] == []
    # The runner has exited: had anything of its uid survived it, it would still be here.
    assert _uid_processes(RUNNER_UID) == []
    assert not marker.exists()


def test_a_same_uid_runner_on_a_developers_machine_leaves_their_tmp_alone(
        place: Place, canary: str) -> None:
    marker, tag = place.scratch / "marker", uuid.uuid4().hex
    developer_file = place.scratch / "developer-notes"
    developer_file.write_text("mine")
    os.chown(developer_file, RUNNER_UID, RUNNER_UID)
    events: list[dict[str, Any]] = [
        {"case": "litter", "tag": tag, "dirs": [str(place.scratch)]},
        {"case": "daemon", "marker": str(marker), "delay": 2}, {"case": "ok"}]
    controls, results = run_runner(_same_uid_job(place, "local", events), canary)
    assert controls["isolation"] == "local"
    assert controls["subreaper"] is True
    assert results[-1]["response"]["ok"]
    assert developer_file.read_text() == "mine"
    assert (place.scratch / f"litter-{tag}").exists()  # local: what it wrote to /tmp stays
    # But the daemon was below the runner (its subreaper), so it was killed all the same.
    assert _uid_processes(RUNNER_UID) == []
    assert not marker.exists()


def test_a_bundle_cannot_signal_a_root_runner(place: Place, canary: str) -> None:
    job = {"settings": {"work_root": str(place.work_root), "scratch_dirs": [str(place.scratch)]},
           "events": [{"case": "signal_runner"}, {"case": "ok"}]}
    _, (signalled, after) = run_runner(job, canary)
    assert signalled["response"] == {"killed": False, "error": "EPERM"}
    assert after["response"]["ok"]


def test_a_same_uid_bundle_can_signal_its_runner_in_no_way(place: Place, canary: str) -> None:
    # kill(2) lets a process signal any other of its uid; the child's seccomp filter is what
    # refuses it here (runner.containment.seccomp). Signal 0 checks the right without
    # delivering anything; then a real SIGKILL, which would end the runner before it reports.
    events = [{"case": "signal_runner_every_way"}, {"case": "signal_runner"}, {"case": "ok"}]
    try:
        _, (every_way, signalled, after) = run_runner(_same_uid_job(place, "lambda", events),
                                                      canary)
    finally:
        # Had one got through, the killed runner's child would be nobody's: take it.
        reaper.sweep(lambda p, _: p.uid == RUNNER_UID, timeout=10)
    refused = every_way["response"]
    assert len(refused) >= 10
    assert {how: outcome for how, outcome in refused.items()
            if outcome not in ("EPERM", "ENOSYS")} == {}
    assert signalled["response"] == {"killed": False, "error": "EPERM"}
    assert after["response"]["ok"]
    assert _uid_processes(RUNNER_UID) == []


def test_a_bundle_can_signal_a_root_runner_in_no_way(place: Place, canary: str) -> None:
    job = {"settings": {"work_root": str(place.work_root), "scratch_dirs": [str(place.scratch)]},
           "events": [{"case": "signal_runner_every_way"}, {"case": "ok"}]}
    _, (every_way, after) = run_runner(job, canary)
    assert set(every_way["response"].values()) <= {"EPERM", "ENOSYS"}
    assert after["response"]["ok"]


def test_a_same_uid_bundle_keeps_no_key_or_queue_and_meets_the_filter(place: Place,
                                                                      canary: str) -> None:
    secret = uuid.uuid4().hex
    events = [{"case": "keep_secrets", "secret": secret}, {"case": "find_secrets"},
              {"case": "kernel_surface"}, {"case": "ok"}]
    _, (kept, found, surface, after) = run_runner(_same_uid_job(place, "lambda", events),
                                                  canary)
    assert kept["response"]["user_key"] in {"EPERM", "ENOSYS"}
    assert found["response"] == {"found": {}}
    assert set(surface["response"].values()) <= {"EPERM", "ENOSYS"}
    assert after["response"]["ok"]


def test_concurrent_runners_reach_neither_each_others_api_nor_code(place: Place,
                                                                   canary: str) -> None:
    # Runner A (a process of its own) holds its child before `next`: its event is there to
    # take. Runner B (this process), with another sandbox uid, runs a bundle that calls `next`
    # on A's Runtime API, would answer it with a forgery, and reads A's bundle code.
    hold = place.scratch / "hold"
    hold.mkdir()
    for fifo in ("address", "go"):
        os.mkfifo(hold / fifo)
        (hold / fifo).chmod(0o666)
    job = {"settings": {"work_root": str(place.work_root), "scratch_dirs": [str(place.scratch)],
                        "sandbox_uid": 64251, "sandbox_gid": 64251},
           "env": {"HOSTILE_HOLD_BEFORE_NEXT": str(hold)},
           "events": [{"case": "ok", "echo": "A"}], "timeout_ms": 30_000}
    job_file = place.work_root.parent / "job-a.json"
    job_file.write_text(json.dumps(job))
    with job_file.open() as stdin:
        runner_a = subprocess.Popen(
            [sys.executable, "-m", "tests.support.containment_harness"], cwd=REPO, text=True,
            env={"PATH": "/usr/bin:/bin", "UDF_TEST_CANARY": canary},
            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        address = (hold / "address").read_text()  # once A's child is held
        runner_b = Runner(Settings(work_root=place.work_root, scratch_dirs=(place.scratch,),
                                   sandbox_uid=64252, sandbox_gid=64252))
        stolen = runner_b.invoke({"case": "steal_from_another_runner", "address": address})
        go = os.open(hold / "go", os.O_WRONLY | os.O_NONBLOCK)  # A's child is waiting on it
        os.close(go)
        out, err = runner_a.communicate(timeout=60)
    finally:
        if runner_a.poll() is None:
            runner_a.kill()
            runner_a.wait()
    assert runner_a.returncode == 0, err
    _, result_a = (json.loads(line) for line in out.splitlines())
    assert result_a["error_type"] is None
    assert result_a["response"]["echo"] == "A"  # its own answer, not B's forgery
    assert stolen.error is None
    assert stolen.response["next"] != 200
    assert "forged" not in stolen.response
    assert stolen.response["code"]  # it saw A's bundle path in A's child's command line
    assert set(stolen.response["code"].values()) == {"EACCES"}
