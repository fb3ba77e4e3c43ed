"""What /proc says about the processes on this machine, and killing a set of them for certain.

Ownership is read from `/proc/<pid>/status` (the real uid) rather than from the owner of
`/proc/<pid>`: a process that makes itself non-dumpable has its /proc entries re-owned by root,
which would hide it from a scan by directory owner.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessInfo:
    """One live process as /proc shows it."""

    pid: int
    ppid: int
    pgrp: int
    session: int
    state: str

    @property
    def is_zombie(self) -> bool:
        """Dead and waiting to be reaped: it runs nothing and holds nothing open."""
        return self.state in ("Z", "X")


def read_process(pid: int) -> ProcessInfo | None:
    """The process `pid`, or None when it has gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_bytes().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain ") ".
    fields = stat[stat.rindex(")") + 2:].split()
    return ProcessInfo(pid=pid, state=fields[0], ppid=int(fields[1]), pgrp=int(fields[2]),
                       session=int(fields[3]))


def real_uid(pid: int) -> int | None:
    """The real uid of `pid`, or None when it has gone."""
    try:
        status = (PROC / str(pid) / "status").read_bytes()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith(b"Uid:"):
            return int(line.split()[1])
    return None


def pids() -> Iterator[int]:
    """Every pid /proc lists right now."""
    for entry in os.scandir(PROC):
        if entry.name.isdigit():
            yield int(entry.name)


def processes() -> Iterator[ProcessInfo]:
    """Every live process (zombies included; check `is_zombie`)."""
    for pid in pids():
        info = read_process(pid)
        if info is not None:
            yield info


def kill_and_wait(targets: Iterable[int], timeout: float) -> set[int]:
    """SIGKILL each pid and wait until all have exited; returns those still alive at `timeout`.

    Signals go through pidfds, so a pid reused after the scan is never hit; exit is awaited on
    the same pidfds (readable once the process has exited), without polling /proc in a loop.
    """
    fds: dict[int, int] = {}
    try:
        for pid in targets:
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                continue
            fds[fd] = pid
            # A process that exits between open and signal is seen at once by the poll below.
            with suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        return _wait_exited(fds, timeout)
    finally:
        for fd in fds:
            os.close(fd)


def _wait_exited(fds: dict[int, int], timeout: float) -> set[int]:
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    pending = set(fds)
    end = time.monotonic() + timeout
    while pending:
        remaining = end - time.monotonic()
        if remaining <= 0:
            break
        for fd, _ in poller.poll(remaining * 1000):
            pending.discard(fd)
            poller.unregister(fd)
    return {fds[fd] for fd in pending}
