"""The bundle's runtime as a child process: started in its own session, stopped for certain.

The child gets stdin from /dev/null, its two output pipes and nothing else (`close_fds`), a
working directory, an environment built by `runner.runtimes` and never copied from ours, and
its `Confinement`, applied between fork and exec (so nothing of the bundle runs before it
holds): its uid and resource limits and, when confined, a fresh session keyring, no_new_privs
and the system-call filter that keeps it from signalling this process. A confined child is
forked by the spawner process (`runner.containment.spawner`: a fork of this process would cost
more than all the rest of starting it); one with nothing to apply between fork and exec is
started here, by the plain `subprocess` path (vfork).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from runner.containment import procfs
from runner.containment.limits import Confinement
from runner.containment.spawner import SPAWNER, SpawnRequest
from runner.invoke.output import CONSOLE

__all__ = ["KILL_WAIT_SECONDS", "TELEMETRY_LOG_FD", "Child", "ChildSpec"]

#: The variable naming the telemetry log descriptor (Lambda's name; the Node client reads it).
TELEMETRY_LOG_FD = "_LAMBDA_TELEMETRY_LOG_FD"

#: How long to wait for processes to die once SIGKILLed; only a process stuck in the kernel
#: (uninterruptible I/O) takes longer, and then the runner reports it rather than hang.
KILL_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class ChildSpec:
    """How to start the child."""

    argv: Sequence[str]
    cwd: Path
    env: Mapping[str, str]
    confinement: Confinement = field(default_factory=Confinement)
    # Give the child a pipe for Lambda's telemetry log frames, as Lambda gives its managed
    # runtimes: their client writes console records there synchronously, so none is still
    # queued in the runtime when it answers (Node's writes to a stdout pipe are asynchronous).
    telemetry_log: bool = False


class _Process(Protocol):
    """A started child: its pid, a pidfd for it, and its exit status once it has exited."""

    pid: int
    pidfd: int

    def poll(self) -> int | None: ...

    def wait(self) -> int: ...


class Child:
    """A running child: its pid, its output pipes, and a pidfd to wait on it without polling."""

    def __init__(self, spec: ChildSpec) -> None:
        stdout_r, stdout_w = os.pipe2(os.O_CLOEXEC)
        stderr_r, stderr_w = os.pipe2(os.O_CLOEXEC)
        self.streams = {stdout_r: "stdout", stderr_r: "stderr"}
        theirs = [stdout_w, stderr_w]
        telemetry: int | None = None
        if spec.telemetry_log:
            telemetry_r, telemetry = os.pipe2(os.O_CLOEXEC)
            self.streams[telemetry_r] = CONSOLE
            theirs.append(telemetry)
        try:
            self._process = _start(spec, stdout_w, stderr_w, telemetry)
        except BaseException:
            for fd in self.streams:
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)  # the child's ends: ours would keep the pipes from ever closing
        self.pid = self._process.pid
        self.pidfd = self._process.pidfd

    @property
    def returncode(self) -> int | None:
        """Exit status once reaped: negative for a signal, as in `subprocess`."""
        return self._process.poll()

    def stop(self, grace: float) -> None:
        """SIGTERM the whole process group, SIGKILL it after `grace`, and wait until it is gone.

        Members that left the group (setsid, double fork) are not found here; the sweep of
        `runner.containment` (by process tree and by uid) takes them.
        """
        _signal_group(self.pid, signal.SIGTERM)
        if self._process.poll() is None:
            poller = select.poll()
            poller.register(self.pidfd, select.POLLIN)
            poller.poll(grace * 1000)
        _signal_group(self.pid, signal.SIGKILL)
        self._process.wait()
        if not _group_exists(self.pid):
            return  # no member left, not even a zombie: nothing for a /proc scan to find
        members = [p for p in procfs.processes() if p.pgrp == self.pid and not p.is_zombie]
        procfs.kill_and_wait(members, KILL_WAIT_SECONDS)

    def close(self) -> None:
        """Release the pidfd and the pipes; a child still running (the invocation was cut
        short by an exception) is stopped first, without grace."""
        if self._process.poll() is None:
            self.stop(0)
        os.close(self.pidfd)
        for fd in self.streams:
            os.close(fd)


def _start(spec: ChildSpec, stdout: int, stderr: int, telemetry: int | None) -> _Process:
    confined = spec.confinement
    if confined.user is not None or confined.group is not None or confined.rlimits \
            or confined.confined:
        return _Spawned(SPAWNER.spawn(SpawnRequest(
            argv=spec.argv, cwd=spec.cwd, env=spec.env, stdout=stdout, stderr=stderr,
            umask=confined.umask,
            user=confined.user if confined.user is not None else os.getuid(),
            group=confined.group if confined.group is not None else os.getgid(),
            rlimits=confined.rlimits, confined=confined.confined,
            clear_keyrings=confined.clear_keyrings,
            telemetry=(TELEMETRY_LOG_FD, telemetry) if telemetry is not None else None)))
    return _Direct(spec, stdout, stderr, telemetry)


class _Direct:
    """A child with nothing to apply between fork and exec, started here (vfork)."""

    def __init__(self, spec: ChildSpec, stdout: int, stderr: int,
                 telemetry: int | None) -> None:
        env = dict(spec.env)
        if telemetry is not None:
            env[TELEMETRY_LOG_FD] = str(telemetry)
        self._popen = subprocess.Popen(
            list(spec.argv), cwd=spec.cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout,
            stderr=stderr, close_fds=True, pass_fds=() if telemetry is None else (telemetry,),
            start_new_session=True, umask=spec.confinement.umask)
        self.pid = self._popen.pid
        self.pidfd = os.pidfd_open(self.pid)

    def poll(self) -> int | None:
        return self._popen.poll()

    def wait(self) -> int:
        return self._popen.wait()


class _Spawned:
    """A child the spawner started: it reaps the child, and tells its status when asked."""

    def __init__(self, started: tuple[int, int]) -> None:
        self.pid, self.pidfd = started
        self._returncode: int | None = None

    def poll(self) -> int | None:
        if self._returncode is None and select.select([self.pidfd], [], [], 0)[0]:
            self.wait()  # it has exited: the spawner answers at once
        return self._returncode

    def wait(self) -> int:
        if self._returncode is None:
            self._returncode = SPAWNER.wait(self.pid, self.pidfd)
        return self._returncode


def _group_exists(pgid: int) -> bool:
    """Whether any process (a zombie included) is still in the process group `pgid`. Signal 0
    only checks; nothing can join a group once it is empty."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # there are members, of another uid
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):  # the whole group has already gone
        os.killpg(pgid, sig)
