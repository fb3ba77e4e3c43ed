"""The spawner: a small process, started once, that forks each confined child for the runner.

A confined child needs a fork: its uid, resource limits, keyrings and system-call filter are set
between fork and exec (so nothing of the bundle runs before they hold), which `subprocess` does
only in a forked child, never in a vforked one. A fork copies the page tables of the process
that forks, and afterwards each page that process writes faults once more: from a runner of
about 90 MB that cost more than the rest of starting the child (docs/performance.md). So the
runner has a process of its own fork instead (`_spawner_process`): a fresh interpreter of about
15 MB, started with posix_spawn (vfork: nothing copied), holding nothing of the runner's (an
empty environment, non-dumpable), asked over a socket pair.

The child is the spawner's: it reaps the child and reports its status (`wait`). The runner holds
a pidfd for the child, opened by the spawner before anything could reap it, so a pid reused
later is never signalled; orphans below the child still come to the runner, its subreaper. The
spawner is kept from the bundle as the runner is: the child's filter names its pid with the
runner's threads (`seccomp.Target`), it shares the runner's process group, and sweeps leave it
alone (`key`). It ends when the runner's end of the socket closes; if it ends otherwise, the
next request starts another.
"""

from __future__ import annotations

import array
import atexit
import marshal
import os
import select
import signal
import socket
import sys
import threading
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.containment import procfs, seccomp
from runner.containment._spawner_process import LAUNCH, MAX_FDS, MAX_MESSAGE
from runner.errors import SandboxError

__all__ = ["SPAWNER", "SpawnRequest", "Spawner"]

_HOME = str(Path(__file__).parent)  # where `LAUNCH` imports the spawner's modules from
#: How long to wait for the spawner to exit once its socket is closed (at the runner's exit).
_EXIT_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class SpawnRequest:
    """A confined child to start, on descriptors of the runner's (sent, not given away)."""

    argv: Sequence[str]
    cwd: Path
    env: Mapping[str, str]
    stdout: int
    stderr: int
    umask: int
    user: int  # the runner's own uid and gid, or the sandbox uid's
    group: int
    rlimits: Mapping[int, int]
    confined: bool  # fresh session keyring, no_new_privs, the filter
    clear_keyrings: bool
    telemetry: tuple[str, int] | None = None  # a pipe to pass, and the variable naming it


class Spawner:
    """The runner's end of the spawner process; one request at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None  # this process's child while it has not been reaped
        self._sock: socket.socket | None = None
        self._key: tuple[int, int] | None = None
        self._program: tuple[seccomp.Target, bytes] | None = None  # the last filter made

    @property
    def key(self) -> tuple[int, int] | None:
        """The spawner process's (pid, start time) while it runs: never a stray."""
        return self._key

    def start(self) -> None:
        """Start the spawner unless it is running."""
        with self._lock:
            self._ensure_running()

    def spawn(self, request: SpawnRequest) -> tuple[int, int]:
        """Start the child; its pid and a pidfd for it. OSError when it could not start (as
        `subprocess` raises it); SandboxError when the spawner failed (never retried here: it
        may have started the child before it ended)."""
        fds = [request.stdout, request.stderr]
        if request.telemetry is not None:
            fds.append(request.telemetry[1])
        with self._lock:
            sock = self._ensure_running()
            message = {
                "op": "spawn", "argv": list(request.argv), "cwd": str(request.cwd),
                "env": dict(request.env), "umask": request.umask, "user": request.user,
                "group": request.group, "rlimits": list(request.rlimits.items()),
                "filter": self._filter() if request.confined else None,
                "clear_keyrings": request.clear_keyrings,
                "fd_variable": request.telemetry[0] if request.telemetry else None,
            }
            reply, passed = self._exchange(sock, message, fds)
        if "pid" not in reply or len(passed) != 1:
            for fd in passed:
                os.close(fd)
            raise OSError(reply.get("errno"), reply.get("strerror", "the spawner failed"))
        return int(reply["pid"]), passed[0]

    def wait(self, pid: int, pidfd: int) -> int:
        """Wait for the child `pid` (with `pidfd`) started here to exit; its status (negative:
        the signal). If the spawner has ended meanwhile, the child is an orphan, and so the
        runner's own (its subreaper) once that spawner's exit is complete: reaped here."""
        with self._lock:
            if self._sock is not None:
                with suppress(SandboxError):
                    reply, _ = self._exchange(self._sock, {"op": "wait", "pid": pid}, [])
                    if "returncode" in reply:
                        return int(reply["returncode"])
            if self._sock is None and self._pid is not None \
                    and _ended(self._pid, _EXIT_WAIT_SECONDS):
                self._pid = None
        return _reap_orphan(pidfd)

    def stop(self) -> None:
        """Close the socket and wait for the spawner to end (at the runner's exit)."""
        with self._lock:
            pid, self._pid = self._pid, None
            self._close()
        if pid is not None and not _ended(pid, _EXIT_WAIT_SECONDS):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)

    def forget(self) -> None:
        """In a forked child of the runner: the spawner is the parent's, not this process's."""
        self._lock = threading.Lock()
        if self._sock is not None:
            self._sock.close()
        self._pid = self._sock = self._key = None

    def _ensure_running(self) -> socket.socket:
        if self._sock is not None and self._pid is not None and not _ended(self._pid, 0):
            return self._sock
        self._close()
        if self._pid is not None and not _ended(self._pid, 0):
            # One that stopped answering: ours, never reused, and never left a zombie.
            os.kill(self._pid, signal.SIGKILL)
            os.waitpid(self._pid, 0)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            theirs.set_inheritable(True)  # the one descriptor it gets besides /dev/null
            # posix_spawn (vfork): nothing copied, nothing run between fork and exec, and
            # nothing of ours in its environment.
            self._pid = os.posix_spawn(
                sys.executable,
                [sys.executable, "-I", "-S", "-c", LAUNCH, _HOME, str(theirs.fileno())],
                {}, file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)])
        self._sock = ours
        found = procfs.read_process(self._pid)
        self._key = found.key if found is not None else None
        return ours

    def _filter(self) -> bytes:
        """The child's filter, naming this process's threads and the spawner: assembled again
        only when they changed (they seldom do: the Runtime API's threads are kept)."""
        others = frozenset({self._pid}) if self._pid is not None else frozenset()
        target = seccomp.Target.this_process(others=others)
        if self._program is None or self._program[0] != target:
            self._program = (target, seccomp.program(target))
        return self._program[1]

    def _exchange(self, sock: socket.socket, message: dict[str, Any],
                  fds: list[int]) -> tuple[dict[str, Any], list[int]]:
        """Send one request and read its reply; a spawner that does not answer is closed (it
        ends on its own once its socket closes, and the next request starts another)."""
        try:
            ancillary = ([(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
                         if fds else [])
            sock.sendmsg([marshal.dumps(message)], ancillary)
            data, received, _, _ = sock.recvmsg(
                MAX_MESSAGE, socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize))
            if not data:
                raise ConnectionError("it closed its socket")
        except OSError as e:
            self._close()
            raise SandboxError(f"the spawner process failed: {e}") from e
        passed = array.array("i")
        for level, kind, payload in received:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                passed.frombytes(payload[:len(payload) - len(payload) % passed.itemsize])
        reply: dict[str, Any] = marshal.loads(data)  # noqa: S302 - from our own spawner alone
        return reply, list(passed)

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._key = None


def _ended(pid: int, timeout: float) -> bool:
    """Whether the spawner `pid` has ended (and is reaped), waiting up to `timeout` seconds for
    it on a pidfd."""
    with suppress(ProcessLookupError):
        fd = os.pidfd_open(pid)
        try:
            select.select([fd], [], [], timeout)
        finally:
            os.close(fd)
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True


def _reap_orphan(pidfd: int) -> int:
    """The status of a child whose spawner has ended, reaped by the runner itself."""
    try:
        done = os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
    except ChildProcessError as e:
        raise SandboxError("the child's exit status was lost with its spawner") from e
    if done is None:
        raise SandboxError("the child's exit status was lost with its spawner")
    return -done.si_status if done.si_code in (os.CLD_KILLED, os.CLD_DUMPED) else done.si_status


#: The runner's spawner (one per process).
SPAWNER = Spawner()
os.register_at_fork(after_in_child=SPAWNER.forget)
atexit.register(SPAWNER.stop)
