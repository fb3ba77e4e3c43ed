"""Containment's own guarantees with real processes: what the attempt dir looks like to the
child, what a sweep leaves alone (the runner's other children), and failing closed."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from runner.containment import environment as containment_environment
from runner.containment import procfs, seccomp
from runner.containment.removal import remove_tree
from runner.errors import CleanupFailedError, SandboxError
from runner.settings import Settings
from tests.support.containment_harness import Runner

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="the child gets a uid of its own only under a root runner")


def _sandbox_processes(settings: Settings) -> list[int]:
    return [p.pid for p in procfs.processes()
            if p.uid == settings.sandbox_uid and not p.is_zombie]


def test_home_and_tmp_are_the_childs_and_the_bundle_is_only_readable(settings: Settings) -> None:
    runner = Runner(settings)
    with runner.containment.attempt("t/1") as attempt:
        dirs = attempt.dirs
        for own in (dirs.home, dirs.tmp):
            info = own.stat()
            assert (info.st_uid, info.st_gid) == (settings.sandbox_uid, settings.sandbox_gid)
            assert stat.S_IMODE(info.st_mode) == 0o700
        task = dirs.task_root.stat()
        assert (task.st_uid, task.st_gid, stat.S_IMODE(task.st_mode)) == (
            0, settings.sandbox_gid, 0o750)
        assert stat.S_IMODE(dirs.task_root.parent.stat().st_mode) == 0o711
    assert not dirs.task_root.parent.exists()


def test_the_child_runs_as_the_sandbox_uid_with_no_supplementary_groups(
        settings: Settings) -> None:
    got = Runner(settings).invoke({"case": "ok"})
    assert got.response["uid"] == settings.sandbox_uid
    assert got.response["gid"] == settings.sandbox_gid
    assert got.response["groups"] == []


def test_a_sweep_never_touches_children_it_did_not_start(settings: Settings,
                                                         tmp_path: Path) -> None:
    # The local stack and the tests start children of their own next to the runner's.
    sleeper = subprocess.Popen(["/bin/sleep", "600"])
    failing = subprocess.Popen(["/bin/false"])
    try:
        got = Runner(settings).invoke({"case": "daemon", "marker": str(tmp_path / "m"),
                                       "delay": 2})
        assert got.error is None
        assert sleeper.poll() is None  # not killed
        assert failing.wait() == 1  # its exit status was not collected by the sweep
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_process_that_cannot_be_killed_in_time_fails_closed(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = Runner(settings)
    # No process this test can start resists SIGKILL; a sweep with no time at all has the
    # same effect: the daemon is still alive when the sweep must be done.
    monkeypatch.setattr(containment_environment, "SWEEP_SECONDS", 0.0)
    got = runner.invoke({"case": "daemon", "marker": str(tmp_path / "m"), "delay": 600})
    assert isinstance(got.error, SandboxError)
    assert got.error_type == "Sandbox.Failure"
    assert got.error.is_retryable
    assert "could not be killed" in got.error.message
    refused = runner.invoke({"case": "ok"})
    assert refused.error_type == "Sandbox.Failure"
    assert "earlier attempt left processes behind" in refused.error.message  # type: ignore[union-attr]
    assert _sandbox_processes(settings) != []
    monkeypatch.undo()
    # A new execution environment (cold start) kills what the old one left.
    fresh = Runner(settings)
    assert fresh.containment.problem is None
    assert _sandbox_processes(settings) == []
    assert fresh.invoke({"case": "ok"}).error is None


def test_a_work_root_the_sandbox_uid_cannot_reach_refuses_every_attempt(tmp_path: Path) -> None:
    hidden = tmp_path / "private" / "work"  # pytest's tmp_path is 0700
    hidden.mkdir(parents=True)
    runner = Runner(Settings(work_root=hidden))
    assert runner.containment.controls.work_root_reachable is False
    got = runner.invoke({"case": "ok"})
    assert got.error_type == "Sandbox.Failure"
    assert "work_root_reachable" in got.error.message  # type: ignore[union-attr]
    assert runner.containment.log_fields()["containment"]["missing"] == ["work_root_reachable"]


def test_cold_start_records_what_works_here(settings: Settings) -> None:
    line = Runner(settings).containment.log_fields()["containment"]
    assert line["isolation"] == "separate-uid"
    assert line["missing"] == []
    assert line["refusal"] is None
    assert line["dumpable_off"] is True
    assert line["subreaper"] is True
    assert line["setrlimit"] is True
    assert line["separate_uid"] is True


def test_a_refused_filter_is_told_apart_from_a_refused_uid(settings: Settings,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """One probe process normally proves both (the filter's runs as the sandbox uid); when the
    filter is refused (a kernel that cannot be made to here: faked), the uid is probed alone."""
    monkeypatch.setattr(seccomp, "works", lambda *a, **k: False)
    isolation = containment_environment.Isolation.SEPARATE_UID
    controls = containment_environment.probe(settings, isolation)
    assert controls.separate_uid is True
    assert controls.missing() == ["child_filter"]


def test_an_attempt_that_fails_inside_the_runner_still_leaves_nothing(settings: Settings,
                                                                     tmp_path: Path) -> None:
    runner = Runner(settings)

    def broken_sink(line: str) -> None:
        raise RuntimeError("a bug in the runner while the child runs")

    with pytest.raises(RuntimeError, match="a bug in the runner"):
        runner.invoke({"case": "daemon", "marker": str(tmp_path / "m"), "delay": 600},
                      on_line=broken_sink)
    assert _sandbox_processes(settings) == []
    assert list((settings.work_root / "attempts").iterdir()) == []
    assert runner.invoke({"case": "ok"}).error is None


def test_a_child_started_after_a_sweep_is_swept_when_the_attempt_ends(
        settings: Settings) -> None:
    # The attempt's end skips its sweep only when one found nothing since the last child could
    # start: a confinement handed out after it means a child may be running again.
    runner = Runner(settings)
    with runner.containment.attempt("t/1") as attempt:
        attempt.sweep()
        confined = attempt.confinement(10_000)
        late = subprocess.Popen(["/bin/sleep", "600"], user=confined.user, group=confined.group,
                                extra_groups=[], start_new_session=True)
    try:
        assert late.poll() is not None  # killed and reaped by the attempt's end
        assert _sandbox_processes(settings) == []
    finally:
        if late.poll() is None:
            late.kill()
            late.wait()


def test_a_cleanup_that_cannot_finish_fails_closed_with_its_own_error(settings: Settings) -> None:
    runner = Runner(settings)
    pinned: list[Path] = []

    def pin(line: str) -> None:
        # An immutable file (which no bundle can make) stands for whatever cannot be removed.
        if " made " in line:
            bottom = Path(line.rsplit(" made ", 1)[1]) / "level-00001" / "level-00002" / "bottom"
            subprocess.run(["chattr", "+i", str(bottom)], check=True)
            pinned.append(bottom)

    try:
        got = runner.invoke({"case": "deep_tree", "depth": 3, "dirs": ["$HOME"]}, on_line=pin)
        assert pinned
        assert isinstance(got.error, CleanupFailedError)
        assert got.error_type == "Sandbox.CleanupFailed"
        assert not got.error.is_retryable
        refused = runner.invoke({"case": "ok"})
        assert refused.error_type == "Sandbox.Failure"
        assert "could not be removed" in refused.error.message  # type: ignore[union-attr]
        assert _sandbox_processes(settings) == []
    finally:
        for path in pinned:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    remove_tree(settings.work_root / "attempts")
    assert Runner(settings).invoke({"case": "ok"}).error is None


def test_cold_start_never_raises_whatever_is_in_the_way(tmp_path: Path) -> None:
    in_the_way = tmp_path / "work"
    in_the_way.write_text("not a directory")
    runner = Runner(Settings(work_root=in_the_way))
    assert runner.containment.problem is not None
    assert "cold start failed" in runner.containment.problem
    got = runner.invoke({"case": "ok"})
    assert got.error_type == "Sandbox.Failure"


_KEYS = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
if sys.argv[1] == "add":
    print(libc.syscall(248, b"user", b"left-behind", b"secret", 6, -4))  # add_key, user keyring
else:
    print(libc.syscall(250, 10, -4, b"user", b"left-behind", 0))  # KEYCTL_SEARCH
"""


def _keys_as(settings: Settings, what: str) -> int:
    done = subprocess.run(["/usr/bin/python3", "-c", _KEYS, what], user=settings.sandbox_uid,
                          group=settings.sandbox_gid, extra_groups=[], capture_output=True,
                          text=True, check=True)
    return int(done.stdout)


def test_a_key_the_sandbox_uid_kept_is_gone_before_the_next_bundle_runs(
        settings: Settings) -> None:
    # Beneath the filter (which refuses keyrings to bundles): a key left in the uid's user
    # keyring some other way is emptied out by the next child before its bundle starts.
    assert _keys_as(settings, "add") > 0
    assert _keys_as(settings, "search") > 0
    assert Runner(settings).invoke({"case": "ok"}).error is None
    assert _keys_as(settings, "search") == -1


#: A process that makes itself a child subreaper and orphans a grandchild, which it then holds:
#: runner -> it -> (its child, gone) -> the grandchild. Prints the grandchild's pid.
_ORPHANS_BELOW_ITSELF = """
import ctypes, os, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
reader, writer = os.pipe()
if os.fork() == 0:
    grandchild = os.fork()
    if grandchild == 0:
        time.sleep(600)
    os.write(writer, str(grandchild).encode())
    os._exit(0)
os.wait()
print(os.read(reader, 32).decode(), flush=True)
time.sleep(600)
"""


def _orphan_below() -> tuple[subprocess.Popen[str], procfs.ProcessInfo]:
    holder = subprocess.Popen([sys.executable, "-c", _ORPHANS_BELOW_ITSELF],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    grandchild = procfs.read_process(int(holder.stdout.readline()))
    assert grandchild is not None
    assert grandchild.ppid == holder.pid  # reparented deep down
    return holder, grandchild


def _alive(process: procfs.ProcessInfo) -> bool:
    now = procfs.read_process(process.pid)
    return now is not None and now.key == process.key and not now.is_zombie


def test_the_runners_tree_holds_processes_reparented_deep_below_it(settings: Settings) -> None:
    # An attempt's start reads the runner's tree, not /proc: what runs below the runner then
    # is spared however deep it sits, and what the attempt starts the same way is killed.
    runner = Runner(settings)
    earlier, earlier_orphan = _orphan_below()
    with earlier:
        try:
            with runner.containment.attempt("t/1"):
                later, later_orphan = _orphan_below()
            with later:
                assert later.poll() is not None
            assert not _alive(later_orphan)
            assert _alive(earlier_orphan)
        finally:
            os.kill(earlier_orphan.pid, signal.SIGKILL)
            earlier.kill()
            earlier.wait()
            os.waitpid(earlier_orphan.pid, 0)  # handed to the runner, its subreaper


def test_an_attempt_starts_from_the_runners_tree_and_counts_the_uids_tasks(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = Runner(settings)  # its cold start's sweep counted the uid's tasks outside the tree
    sandboxed = subprocess.Popen(["/bin/sleep", "600"], user=settings.sandbox_uid,
                                 group=settings.sandbox_gid, extra_groups=[])
    read: list[int] = []
    real_read = procfs.read_process

    def recording(pid: int) -> procfs.ProcessInfo | None:
        read.append(pid)
        return real_read(pid)

    monkeypatch.setattr(procfs, "read_process", recording)
    try:
        with runner.containment.attempt("t/1") as attempt:
            started = set(read)
            monkeypatch.undo()
            tree = procfs.subtree(os.getpid())
            assert tree is not None
            assert started <= tree.keys()  # nothing outside the runner's tree was read
            assert sandboxed.pid in started
            # RLIMIT_NPROC's count is the whole uid's, as a scan of /proc gives it.
            assert attempt.tasks_in_use == procfs.task_count(settings.sandbox_uid) >= 1
    finally:
        if sandboxed.poll() is None:
            sandboxed.kill()
            sandboxed.wait()
