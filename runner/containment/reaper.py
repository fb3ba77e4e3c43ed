"""Killing every process an attempt left behind, and confirming through /proc that none remain.

Which processes belong to the attempt is the caller's rule (`Selector`); this module makes sure
they are gone. They are frozen first (SIGSTOP, which cannot be caught or ignored) and rescanned
until a scan finds none still running, so a fork storm cannot outrun the sweep: a stopped
process forks nothing, and the process slots it holds stay taken until all are SIGKILLed at
once. Then the sweep waits on pidfds for each to exit and reaps those that are the runner's
own children (orphans reparent to the runner when it is a child subreaper). It never reaps a
process the rule did not select.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from runner.containment import procfs
from runner.containment.procfs import ProcessInfo
from runner.errors import SandboxError

__all__ = ["Selector", "Swept", "sweep"]

#: Decides whether a process (seen with the whole process table) belongs to the attempt.
Selector = Callable[[ProcessInfo, Mapping[int, ProcessInfo]], bool]


@dataclass(frozen=True)
class Swept:
    """What a sweep did: how many processes it killed, and its last scan of /proc (the one that
    found none of them alive)."""

    killed: int
    table: Mapping[int, ProcessInfo]


def sweep(select: Selector, timeout: float) -> Swept:
    """Kill and reap every process `select` picks until a scan finds none alive. Raises
    `SandboxError` if any is still alive after `timeout` seconds."""
    end = time.monotonic() + timeout
    killed = 0
    while True:
        held, procs = _freeze(select, end)
        if not held:
            return Swept(killed, procs)
        try:
            for fd in held:
                procfs.send(fd, signal.SIGKILL)
            alive = procfs.wait_exited(held, max(0.0, end - time.monotonic()))
            for fd in held:
                procfs.reap(fd)
            killed += len(held) - len(alive)
            if alive:
                raise _survivors([held[fd] for fd in alive])
        finally:
            for fd in held:
                os.close(fd)


def _freeze(select: Selector,
            end: float) -> tuple[dict[int, ProcessInfo], dict[int, ProcessInfo]]:
    """Stop every selected live process, rescanning until a scan adds none and reaps none;
    pidfd -> process, and that last scan.

    A scan that reaped a selected process is followed by another: a process that forked and
    exited while /proc was being read left a child that scan never saw, and the child comes to
    the runner (its subreaper) when its parent exits, so the child's own exit is reaped in turn.
    A chain of processes that each fork the next and exit at once so keeps the scans going
    until one reads a member alive and stops it.
    """
    held: dict[int, ProcessInfo] = {}
    keys: set[tuple[int, int]] = set()
    try:
        while True:
            procs = procfs.table()
            found = [p for p in procs.values() if p.key not in keys and select(p, procs)]
            reaped = _reap_zombies(p for p in found if p.is_zombie)
            live = [p for p in found if not p.is_zombie]
            if not live and not reaped:
                return held, procs
            _check_time(live or reaped, end)
            for process in live:
                keys.add(process.key)
                fd = procfs.open_pidfd(process)
                if fd is not None:
                    held[fd] = process
                    procfs.send(fd, signal.SIGSTOP)
    except BaseException:
        for fd in held:
            os.close(fd)
        raise


def _reap_zombies(zombies: Iterable[ProcessInfo]) -> list[ProcessInfo]:
    """Collect the selected processes that already exited and are the runner's children; the
    ones collected."""
    reaped = []
    for process in zombies:
        if process.ppid == os.getpid():
            fd = procfs.open_pidfd(process)
            if fd is not None:
                if procfs.reap(fd):
                    reaped.append(process)
                os.close(fd)
    return reaped


def _check_time(live: list[ProcessInfo], end: float) -> None:
    if time.monotonic() > end:
        raise _survivors(live)


def _survivors(processes: list[ProcessInfo]) -> SandboxError:
    shown = ", ".join(f"{p.pid} (uid {p.uid}, state {p.state})" for p in processes[:10])
    more = f" and {len(processes) - 10} more" if len(processes) > 10 else ""
    return SandboxError(f"processes left by the bundle could not be killed: {shown}{more}")
