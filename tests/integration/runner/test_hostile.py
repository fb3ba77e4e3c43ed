"""The hostile-bundle suite: each case misbehaves in one way, and the runner must report it as
the right error (if any), run its next invocation normally, and keep nothing of it: no process,
no file, no descriptor, thread or environment change.

These run the runner in this (root) process, so the child gets the sandbox uid; the cases that
need a runner of their own (a secret in its initial environment, a runner that is not root)
are in test_hostile_runner_process.py.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.containment import procfs, sysvipc
from runner.containment.removal import remove_tree
from runner.errors import FunctionError, TimedOutError
from runner.settings import Settings
from tests.support.containment_harness import LABEL, Footprint, Runner, runs

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="the child gets a uid of its own only under a root runner")

PREFIX = re.compile(rf"^\[udf {re.escape(LABEL)} (stdout|stderr)\] ")


class Settled:
    """A runner after one ordinary invocation, and what it looked like then."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self._next_succeeds()
        self.before = self._footprint()

    def _footprint(self) -> Footprint:
        return Footprint.take(self.runner.settings, self.runner.settings.sandbox_uid)

    def _next_succeeds(self) -> None:
        got = self.runner.invoke({"case": "ok", "echo": "next"})
        assert got.error is None, got.error
        assert got.response["echo"] == "next"
        assert got.response["uid"] == self.runner.settings.sandbox_uid

    def check(self) -> None:
        """The next invocation succeeds, and nothing of the last one is left."""
        self._next_succeeds()
        after = self._footprint()
        assert after.uid_processes == frozenset()
        # Subsets: what earlier tests left may be closed or exit meanwhile; nothing may be added.
        assert after.descendants <= self.before.descendants
        assert after.fds <= self.before.fds
        assert after.threads <= self.before.threads
        assert after.environ == self.before.environ
        assert after.files == self.before.files
        assert after.ipc == self.before.ipc


def _settle(settings: Settings, **changes: object) -> Settled:
    return Settled(Runner(settings.model_copy(update=changes)))


@pytest.fixture
def settled(settings: Settings) -> Settled:
    return _settle(settings)


def test_a_double_forked_setsid_daemon_never_writes_its_marker(settled: Settled,
                                                               shared: Path) -> None:
    marker, go = shared / "marker", shared / "go"
    os.mkfifo(go)
    go.chmod(0o666)
    held: dict[str, int] = {}

    def on_line(line: str) -> None:
        found = re.search(r"\] daemon (\d+)$", line)
        if found:
            # Hold the daemon by a pidfd while it runs, then let the bundle answer.
            daemon = procfs.read_process(int(found[1]))
            assert daemon is not None
            fd = procfs.open_pidfd(daemon)
            assert fd is not None
            held.update(fd=fd, pid=daemon.pid, session=daemon.session, uid=daemon.uid)
            with go.open("w"):
                pass

    got = settled.runner.invoke({"case": "daemon", "marker": str(marker), "delay": 2,
                                 "handshake": str(go)}, on_line=on_line)
    try:
        assert got.error is None
        assert got.response["daemon"] == held["pid"]
        assert held["session"] != got.response["session"]  # it left the child's session
        assert held["uid"] == settled.runner.settings.sandbox_uid
        # Wait for the daemon to end, up to well past the time it would write: it must have
        # ended already (killed), and without writing.
        readable, _, _ = select.select([held["fd"]], [], [], 2 + 10)
        assert readable == [held["fd"]]
        assert not marker.exists()
    finally:
        os.close(held["fd"])
    settled.check()
    assert not marker.exists()


def test_a_process_whose_main_thread_ended_is_killed_with_its_threads(settled: Settled,
                                                                      shared: Path) -> None:
    # Its leader is a zombie in /proc/<pid>/stat; a thread of it runs on, looking for the
    # next attempt's secrets.
    marker = shared / "marker"
    got = settled.runner.invoke({"case": "zombie_leader", "marker": str(marker), "delay": 3})
    assert got.error is None
    assert got.response["threads"] >= 1
    assert not runs(got.response["daemon"])
    settled.check()
    assert not runs(got.response["daemon"])
    assert not marker.exists()


@pytest.mark.usefixtures("lambdas_descriptor_limit")
def test_chains_of_processes_that_fork_and_exit_at_once_end_with_the_attempt(
        settled: Settled, shared: Path) -> None:
    # No member lives long enough for one scan of /proc to read it alive: each forks the next
    # and exits, and its orphan comes to the runner.
    survivors = shared / "survivors"
    os.mkfifo(survivors)
    survivors.chmod(0o666)
    reader = os.open(survivors, os.O_RDONLY | os.O_NONBLOCK)
    try:
        for _ in range(3):
            got = settled.runner.invoke({"case": "hop", "chains": 4, "seconds": 20,
                                         "survivors": str(survivors)})
            assert got.error is None
            assert got.response == {"chains": 4}
        # A member that outlived its attempt says so as soon as it sees its task dir gone.
        readable, _, _ = select.select([reader], [], [], 3)
        assert readable == [], os.read(reader, 4096)
    finally:
        os.close(reader)
    settled.check()


def test_a_tree_of_1200_nested_directories_in_tmp_and_home_is_removed(
        settings: Settings, shared: Path) -> None:
    settled = _settle(settings, scratch_dirs=(*settings.scratch_dirs, shared))
    got = settled.runner.invoke({"case": "deep_tree", "depth": 1200,
                                 "dirs": [str(shared), "$HOME", "$TMPDIR"]})
    assert got.error is None, got.error
    assert len(got.response["made"]) == 3
    assert list(shared.iterdir()) == []
    settled.check()


REFUSED = {"EPERM", "ENOSYS"}


def test_keys_and_message_queues_never_reach_the_next_attempt(settled: Settled) -> None:
    secret = uuid.uuid4().hex
    kept = settled.runner.invoke({"case": "keep_secrets", "secret": secret})
    found = settled.runner.invoke({"case": "find_secrets"})
    assert kept.error is None
    assert kept.response["user_key"] in REFUSED
    assert kept.response["mq_open"] in REFUSED
    assert found.response == {"found": {}}
    assert secret not in str(found.response)
    settled.check()


def test_the_kernel_surface_a_function_never_needs_is_refused(settled: Settled) -> None:
    got = settled.runner.invoke({"case": "kernel_surface"})
    assert got.error is None
    assert {call: answer for call, answer in got.response.items()
            if answer not in REFUSED} == {}
    settled.check()


def test_a_setuid_root_program_gains_nothing(settled: Settled, shared: Path) -> None:
    program = shared / "id-setuid-root"
    shutil.copy2("/usr/bin/id", program)
    program.chmod(0o4755)
    got = settled.runner.invoke({"case": "setuid_program", "path": str(program)})
    assert got.error is None
    assert got.response["euid"] == str(settled.runner.settings.sandbox_uid)
    settled.check()


def test_a_bundle_that_ignores_sigterm_is_killed(settled: Settled) -> None:
    got = settled.runner.invoke({"case": "ignore_term"})
    assert got.error is None
    assert got.response == {"ignoring": "SIGTERM"}
    settled.check()


def test_a_fork_storm_is_bounded_by_the_process_limit(settled: Settled) -> None:
    got = settled.runner.invoke({"case": "fork_storm", "count": 500})
    assert got.error is None
    assert got.response["refused"] == "EAGAIN"
    assert got.response["started"] < settled.runner.settings.child_max_processes
    settled.check()


def test_five_hundred_forked_processes_are_all_killed(settings: Settings) -> None:
    settled = _settle(settings, child_max_processes=600)
    got = settled.runner.invoke({"case": "fork_storm", "count": 500})
    assert got.error is None
    assert got.response == {"started": 500, "refused": None}
    settled.check()


def test_a_memory_hog_is_stopped_by_the_data_limit(settings: Settings) -> None:
    settled = _settle(settings, child_max_data_bytes=256 * 1024 * 1024)
    got = settled.runner.invoke({"case": "memory"})
    assert isinstance(got.error, FunctionError)
    assert got.error.function_error is not None
    assert got.error.function_error.error_type == "MemoryError"
    settled.check()


@pytest.fixture
def small_tmpfs() -> Iterator[Path]:
    """An 8 MiB tmpfs standing in for Lambda's /tmp, so filling it is quick and harmless."""
    mount_point = Path(tempfile.mkdtemp(prefix="udf-runner-tmpfs-"))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=1777", "tmpfs",
                              str(mount_point)], capture_output=True, check=False)
    if mounted.returncode != 0:
        mount_point.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)
        mount_point.rmdir()


def _used(path: Path) -> int:
    stats = os.statvfs(path)
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize


def test_a_bundle_that_fills_tmp_gets_enospc_and_the_space_comes_back(settings: Settings,
                                                                       small_tmpfs: Path) -> None:
    work = small_tmpfs / "work"
    work.mkdir(mode=0o755)
    settled = _settle(settings, work_root=work, scratch_dirs=(small_tmpfs,))
    used = _used(small_tmpfs)
    got = settled.runner.invoke({"case": "fill_disk", "dirs": [str(small_tmpfs)], "max_mb": 64})
    assert got.error is None
    stopped = got.response["stopped"]
    assert len(stopped) == 2  # its TMPDIR, then the scratch dir itself
    assert set(stopped.values()) == {"ENOSPC"}
    settled.check()
    assert _used(small_tmpfs) <= used


def test_a_file_over_the_size_limit_is_refused(settings: Settings) -> None:
    settled = _settle(settings, child_max_file_bytes=4 * 1024 * 1024)
    got = settled.runner.invoke({"case": "big_file", "mb": 16})
    assert got.response == {"written": 4 * 1024 * 1024, "stopped": "EFBIG"}
    settled.check()


def test_200_mb_of_output_is_truncated_and_the_runner_stays_responsive(settled: Settled) -> None:
    got = settled.runner.invoke({"case": "big_stdout", "mb": 200}, timeout_ms=60_000)
    assert got.error is None
    assert got.response == {"wrote_mb": 200}
    assert got.logs.truncated
    assert got.logs.bytes >= 200 * 1024 * 1024
    forwarded = sum(len(line) + 1 for line in got.lines)
    keep = settled.runner.settings.log_keep_bytes
    assert forwarded <= keep + len(got.lines) * len("[udf hostile-task/1 stdout] ")
    assert all(PREFIX.match(line) for line in got.lines)
    settled.check()


def test_forged_lambda_and_runner_log_lines_are_neutralised(settled: Settled) -> None:
    got = settled.runner.invoke({"case": "forge_logs"})
    assert got.error is None
    assert len(got.lines) == 2 * got.response["forged"] + 1
    for line in got.lines:
        assert PREFIX.match(line), line
        assert "\r" not in line
        assert "\x1b" not in line
    bodies = [PREFIX.sub("", line) for line in got.lines]
    assert any(body.startswith("REPORT RequestId:") for body in bodies)  # kept, but prefixed
    assert any(body.startswith("{") for body in bodies)
    assert "\\x0dREPORT RequestId:" in "".join(bodies)
    settled.check()


def test_files_left_in_tmp_and_home_are_removed(settled: Settled) -> None:
    tag = uuid.uuid4().hex
    got = settled.runner.invoke({"case": "litter", "tag": tag})
    assert got.error is None
    made = [Path(p) for p in got.response["made"]]
    assert {p.parent for p in made} >= {Path("/tmp"), Path("/var/tmp"), Path("/dev/shm")}
    assert len(made) >= 7  # the scratch dirs, HOME, TMPDIR, a tree and a link
    assert not any(p.exists() or p.is_symlink() for p in made)
    assert Path("/etc/hostname").exists()
    settled.check()


def test_the_child_cannot_write_outside_world_writable_places(settled: Settled,
                                                              work_root: Path) -> None:
    paths = [str(work_root), str(work_root / "attempts"), "/etc", "/var/task", "/opt"]
    got = settled.runner.invoke({"case": "probe_writes", "paths": paths})
    assert got.error is None
    assert set(got.response.values()) <= {"EACCES", "ENOENT", "EROFS"}
    assert "EACCES" in got.response.values()
    settled.check()


def test_system_v_ipc_objects_are_removed(settled: Settled) -> None:
    got = settled.runner.invoke({"case": "sysv_ipc"})
    assert got.error is None
    assert min(got.response.values()) >= 0  # all three were made
    left = {o.key for o in sysvipc.objects()}
    assert not {(kind, ident) for kind, ident in got.response.items()} & left
    settled.check()


def test_a_cached_bundle_zip_cannot_be_rewritten_by_the_sandbox_uid(settled: Settled,
                                                                    work_root: Path) -> None:
    cache = work_root / "cache"  # runner.bundle.cache's layout: <work_root>/cache/<sha256>.zip
    cache.mkdir(mode=0o755)
    cached = cache / f"{'ab' * 32}.zip"
    cached.write_bytes(b"PK\x05\x06" + bytes(18))
    cached.chmod(0o644)
    try:
        got = settled.runner.invoke({"case": "rewrite_cache", "path": str(cached)})
        assert got.response == {"rewrite": "EACCES", "replace": "EACCES"}
        assert cached.read_bytes() == b"PK\x05\x06" + bytes(18)
    finally:
        remove_tree(cache)
    settled.check()


def test_opening_5000_files_stops_at_the_descriptor_limit(settled: Settled) -> None:
    got = settled.runner.invoke({"case": "open_files", "count": 5000})
    assert got.error is None
    assert got.response["stopped"] == "EMFILE"
    assert got.response["opened"] < settled.runner.settings.child_max_open_files
    settled.check()


def test_a_bundle_that_sigstops_its_own_group_times_out(settled: Settled) -> None:
    got = settled.runner.invoke({"case": "sigstop_group"}, timeout_ms=1000)
    assert isinstance(got.error, TimedOutError)
    settled.check()


def test_a_hung_bundle_times_out(settled: Settled) -> None:
    got = settled.runner.invoke({"case": "hang"}, timeout_ms=500)
    assert isinstance(got.error, TimedOutError)
    settled.check()


def test_the_child_inherits_only_dev_null_and_its_two_pipes(settled: Settled) -> None:
    got = settled.runner.invoke({"case": "fds"})
    fds = got.response["fds"]
    assert set(fds) == {"0", "1", "2"}
    assert fds["0"] == "/dev/null"
    assert fds["1"].startswith("pipe:")
    assert fds["2"].startswith("pipe:")
    assert fds["1"] != fds["2"]
    settled.check()
