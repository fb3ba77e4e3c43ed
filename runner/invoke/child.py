"""The bundle's runtime as a child process: started in its own session, stopped for certain.

The child gets stdin from /dev/null, its two output pipes and nothing else (`close_fds`), a
working directory, an environment built by `runner.runtimes` and never copied from ours, and
the uid and resource limits of its `Confinement`, applied between fork and exec (so no
grandchild can be forked before they hold).
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

from runner.containment import procfs
from runner.containment.limits import Confinement

__all__ = ["KILL_WAIT_SECONDS", "Child", "ChildSpec"]

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


def _rlimit_setter(limits: Mapping[int, int]) -> Callable[[], None] | None:
    items = tuple(limits.items())
    if not items:
        return None

    def apply() -> None:
        # Runs in the child between fork and exec: only a C call per limit, no imports or locks.
        for res, value in items:
            resource.setrlimit(res, (value, value))

    return apply


class Child:
    """A running child: its pid, its output pipes, and a pidfd to wait on it without polling."""

    def __init__(self, spec: ChildSpec) -> None:
        confined = spec.confinement
        self._proc = subprocess.Popen(
            list(spec.argv), cwd=spec.cwd, env=dict(spec.env),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            close_fds=True, start_new_session=True, umask=confined.umask,
            user=confined.user, group=confined.group,
            extra_groups=[] if confined.user is not None else None,
            preexec_fn=_rlimit_setter(confined.rlimits),  # noqa: PLW1509 - see _rlimit_setter
        )
        self.pid = self._proc.pid
        self.pidfd = os.pidfd_open(self.pid)
        stdout, stderr = self._proc.stdout, self._proc.stderr
        if stdout is None or stderr is None:
            raise OSError("the child's output pipes were not created")
        self.streams = {stdout.fileno(): "stdout", stderr.fileno(): "stderr"}

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
