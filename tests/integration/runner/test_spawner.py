"""The spawner process (runner.containment.spawner) with real children: what it starts them
as, what it reports, what the filter keeps them from, and what happens when it is gone."""

from __future__ import annotations

import compileall
import json
import os
import py_compile
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.containment import _spawner_process, hardening, procfs
from runner.containment.limits import Confinement
from runner.containment.spawner import SPAWNER
from runner.invoke.child import Child, ChildSpec

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="the child gets a uid of its own only under a root runner")

#: A child that reports who it is, its limits, and how each kill(pid, 0) it is told to try ends.
_REPORT = """
import json, os, resource, sys
tried = {}
for pid in map(int, sys.argv[1:]):
    try:
        os.kill(pid, 0)
        tried[pid] = "allowed"
    except OSError as e:
        tried[pid] = e.__class__.__name__
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
                  "ppid": os.getppid(), "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
                  "tried": tried}))
"""


def _run(confinement: Confinement, *argv: str) -> tuple[int, str]:
    """Start a child and let it run to its end; its status and what it printed."""
    child = Child(ChildSpec(argv=argv, cwd=Path("/"), env={"PATH": "/usr/bin:/bin"},
                            confinement=confinement))
    try:
        assert select.select([child.pidfd], [], [], 30)[0] == [child.pidfd]
        out = b""
        stdout = next(fd for fd, name in child.streams.items() if name == "stdout")
        while chunk := os.read(stdout, 65536):
            out += chunk
        child.stop(grace=0)
        returncode = child.returncode
    finally:
        child.close()
    assert returncode is not None
    return returncode, out.decode()


@pytest.fixture
def other() -> Iterator[subprocess.Popen[bytes]]:
    """Another process of this (root) uid, that a child may signal."""
    process = subprocess.Popen(["/bin/sleep", "600"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def _report(confinement: Confinement, *pids: int) -> dict[str, object]:
    returncode, out = _run(confinement, "/usr/bin/python3", "-c", _REPORT, *map(str, pids))
    assert returncode == 0, out
    report: dict[str, object] = json.loads(out)
    return report


def test_a_confined_child_is_the_spawners_as_the_uid_named_with_its_limits(
        sandbox_uid: int) -> None:
    report = _report(Confinement(user=sandbox_uid, group=sandbox_uid,
                                 rlimits={resource.RLIMIT_NOFILE: 77}, confined=True))
    SPAWNER.start()
    assert SPAWNER.key is not None
    assert report["ppid"] == SPAWNER.key[0]
    assert (report["uid"], report["gid"], report["groups"]) == (sandbox_uid, sandbox_uid, [])
    assert report["nofile"] == [77, 77]


def test_the_filter_keeps_a_same_uid_child_from_the_spawner_and_the_runner(
        other: subprocess.Popen[bytes]) -> None:
    # Root here, as the runner's uid is in Lambda: only the filter stands in the way.
    SPAWNER.start()
    assert SPAWNER.key is not None
    spawner = SPAWNER.key[0]

    report = _report(Confinement(confined=True), spawner, os.getpid(), other.pid)

    assert report["uid"] == os.getuid()
    assert report["tried"] == {str(spawner): "PermissionError",
                               str(os.getpid()): "PermissionError", str(other.pid): "allowed"}


def test_a_child_that_cannot_start_is_reported_as_subprocess_reports_it() -> None:
    with pytest.raises(FileNotFoundError):
        Child(ChildSpec(argv=["/nonexistent/bootstrap"], cwd=Path("/"), env={},
                        confinement=Confinement(confined=True)))
    # and the spawner serves the next one
    assert _run(Confinement(confined=True), "/bin/true")[0] == 0


def test_the_exit_status_is_the_childs() -> None:
    assert _run(Confinement(confined=True), "/bin/sh", "-c", "exit 3")[0] == 3
    assert _run(Confinement(confined=True), "/bin/sh", "-c", "kill -9 $$")[0] == -signal.SIGKILL


def test_a_spawner_that_ended_is_replaced_and_its_child_still_reported() -> None:
    assert hardening.become_subreaper()  # as the runner is from its cold start
    child = Child(ChildSpec(argv=["/bin/sleep", "600"], cwd=Path("/"), env={},
                            confinement=Confinement(confined=True)))
    try:
        SPAWNER.start()
        assert SPAWNER.key is not None
        old = SPAWNER.key
        os.kill(old[0], signal.SIGKILL)  # the child is an orphan now: the runner's (subreaper)
        child.stop(grace=0)
        assert child.returncode == -signal.SIGTERM  # reaped by the runner itself
    finally:
        child.close()
    assert _run(Confinement(confined=True), "/bin/true")[0] == 0
    assert SPAWNER.key is not None
    assert SPAWNER.key != old
    gone = procfs.read_process(old[0])
    assert gone is None or gone.is_zombie


def test_a_forked_runner_starts_a_spawner_of_its_own() -> None:
    SPAWNER.start()
    parent_spawner = SPAWNER.key
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        code = 1
        try:
            returncode, _ = _run(Confinement(confined=True), "/bin/true")
            code = 0 if returncode == 0 and SPAWNER.key not in (None, parent_spawner) else 1
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0


def test_the_spawner_holds_nothing_of_the_runner() -> None:
    SPAWNER.start()
    assert SPAWNER.key is not None
    spawner = SPAWNER.key[0]
    assert Path(f"/proc/{spawner}/environ").read_bytes() == b""
    status = Path(f"/proc/{spawner}/status").read_text()
    assert "\nUid:\t0\t" in status  # as the runner (root here)
    cmdline = Path(f"/proc/{spawner}/cmdline").read_bytes().split(b"\0")
    assert cmdline[:3] == [sys.executable.encode(), b"-I", b"-S"]


@pytest.fixture
def sandbox_uid() -> int:
    return int(os.environ.get("UDF_RUNNER_SANDBOX_UID", "64200"))


def test_the_filter_is_made_again_for_a_thread_started_since_the_last() -> None:
    # Kept between children while the runner's threads stay the same; never stale.
    SPAWNER.start()
    first = SPAWNER._filter()
    assert SPAWNER._filter() is first
    started, done = threading.Event(), threading.Event()

    def run() -> None:
        started.set()
        done.wait()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        started.wait()
        assert SPAWNER._filter() != first
        assert SPAWNER._program is not None
        assert thread.native_id in SPAWNER._program[0].tids
    finally:
        done.set()
        thread.join()


def test_the_spawner_starts_from_cached_bytecode_and_loads_nothing_of_the_runner(
        tmp_path: Path) -> None:
    """Its modules are imported from their directory, so a byte-compiled copy (as in the
    artifact) is not compiled again at every start, and no `runner` module comes with them."""
    home = tmp_path / "containment"
    shutil.copytree(Path(_spawner_process.__file__).parent, home,
                    ignore=shutil.ignore_patterns("__pycache__"))
    compileall.compile_dir(home, quiet=1,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.close()  # the spawner starts, finds the runner's end closed, and ends

    with theirs:
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-v", "-c", _spawner_process.LAUNCH, str(home),
             str(theirs.fileno())],
            pass_fds=[theirs.fileno()], capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 0, done.stderr[-2000:]
    prefix = "# code object from "
    loaded = [line.removeprefix(prefix).strip("'") for line in done.stderr.splitlines()
              if line.startswith(prefix)]
    ours_loaded = [path for path in loaded if path.startswith(str(home))]
    assert sorted(Path(path).name for path in ours_loaded) == [
        "_spawner_process.cpython-313.pyc", "keyrings.cpython-313.pyc"]
    assert "import 'runner" not in done.stderr
