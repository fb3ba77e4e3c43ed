"""The bundle's runtime as a child process: started in its own session, stopped for certain.

The child gets stdin from /dev/null, its two output pipes and nothing else (`close_fds`), a
working directory, an environment built by `runner.runtimes` and never copied from ours, and
its `Confinement`, applied between fork and exec (so nothing of the bundle runs before it
holds): its uid and resource limits and, when confined, a fresh session keyring
(`runner.containment.keyrings`), no_new_privs and the system-call filter
(`runner.containment.seccomp`) that keeps it from signalling this process.
"""

from __future__ import annotations

import os
import resource
import select
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from runner.containment import keyrings, procfs, seccomp
from runner.containment.limits import Confinement
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


def _preexec(confined: Confinement) -> Callable[[], None] | None:
    """What the child does between fork and exec. Everything is prepared here, in the parent:
    the child makes only C calls (setrlimit, keyctl, prctl), no imports, no locks."""
    limits = tuple(confined.rlimits.items())
    # Built now, when the Runtime API's threads run: their ids are protected too.
    installer = (seccomp.Installer(seccomp.program(seccomp.Target.this_process()))
                 if confined.confined else None)
    clear_keyrings = confined.clear_keyrings
    if not limits and installer is None:
        return None

    def apply() -> None:
        for res, value in limits:
            resource.setrlimit(res, (value, value))
        if installer is not None:
            keyrings.fresh_session(clear_uid=clear_keyrings)
            installer.install()

    return apply


class Child:
    """A running child: its pid, its output pipes, and a pidfd to wait on it without polling."""

    def __init__(self, spec: ChildSpec) -> None:
        confined = spec.confinement
        env = dict(spec.env)
        self._telemetry: int | None = None
        passed: tuple[int, ...] = ()
        if spec.telemetry_log:
            self._telemetry, write_end = os.pipe2(os.O_CLOEXEC)
            env[TELEMETRY_LOG_FD] = str(write_end)
            passed = (write_end,)
        try:
            self._proc = subprocess.Popen(
                list(spec.argv), cwd=spec.cwd, env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                close_fds=True, pass_fds=passed, start_new_session=True, umask=confined.umask,
                user=confined.user, group=confined.group,
                extra_groups=[] if confined.user is not None else None,
                preexec_fn=_preexec(confined),  # noqa: PLW1509 - see _preexec
            )
        except OSError:
            if self._telemetry is not None:
                os.close(self._telemetry)
            raise
        finally:
            for fd in passed:
                os.close(fd)  # the child's end: ours would keep the pipe from ever closing
        self.pid = self._proc.pid
        self.pidfd = os.pidfd_open(self.pid)
        stdout, stderr = self._proc.stdout, self._proc.stderr
        if stdout is None or stderr is None:
            raise OSError("the child's output pipes were not created")
        self.streams = {stdout.fileno(): "stdout", stderr.fileno(): "stderr"}
        if self._telemetry is not None:
            self.streams[self._telemetry] = CONSOLE

    @property
    def returncode(self) -> int | None:
        """Exit status once reaped: negative for a signal, as in `subprocess`."""
        return self._proc.poll()

    def stop(self, grace: float) -> None:
        """SIGTERM the whole process group, SIGKILL it after `grace`, and wait until it is gone.

        Members that left the group (setsid, double fork) are not found here; the sweep of
        `runner.containment` (by process tree and by uid) takes them.
        """
        _signal_group(self.pid, signal.SIGTERM)
        if self._proc.poll() is None:
            poller = select.poll()
            poller.register(self.pidfd, select.POLLIN)
            poller.poll(grace * 1000)
        _signal_group(self.pid, signal.SIGKILL)
        self._proc.wait()
        if not _group_exists(self.pid):
            return  # no member left, not even a zombie: nothing for a /proc scan to find
        members = [p for p in procfs.processes() if p.pgrp == self.pid and not p.is_zombie]
        procfs.kill_and_wait(members, KILL_WAIT_SECONDS)

    def close(self) -> None:
        """Release the pidfd and the pipes; a child still running (the invocation was cut
        short by an exception) is stopped first, without grace."""
        if self._proc.poll() is None:
            self.stop(0)
        os.close(self.pidfd)
        if self._telemetry is not None:
            os.close(self._telemetry)
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()


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
