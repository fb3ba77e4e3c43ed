"""What /proc says about the processes on this machine, and signalling them for certain.

Ownership is read from `/proc/<pid>/status` (the real uid, which is also what RLIMIT_NPROC
counts) rather than from the owner of `/proc/<pid>`: a process that makes itself non-dumpable has
its /proc entries re-owned by root, which would hide it from a scan by directory owner.

A process is alive while any of its threads is. Its main thread can end on its own (the
`exit` system call rather than `exit_group`): /proc/<pid>/stat then shows the thread-group
leader as a zombie while its other threads run on, and a pidfd of it stays unreadable and
waitid finds nothing to reap until the last of them ends. So a zombie leader is looked through,
into /proc/<pid>/task/*, and the process counts as running when any thread there does.

A pid alone does not name a process for long (pids are reused); a pid with its start time does.
Signals go through pidfds opened for a (pid, start time) that was checked after opening, so a
process that replaced a dead one under the same pid is never hit.

The processes below one process (`subtree`) are found without reading every other: each thread's
`/proc/<pid>/task/<tid>/children` lists the processes it forked or was handed as their reaper
(a kernel built with CONFIG_PROC_CHILDREN; `children_listed` tells, once per process).
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = [
    "PROC",
    "ProcessInfo",
    "ancestors",
    "children",
    "children_listed",
    "descends_from",
    "kill_and_wait",
    "open_pidfd",
    "parse_children",
    "pids",
    "processes",
    "read_process",
    "reap",
    "send",
    "subtree",
    "table",
    "task_count",
    "task_count_outside",
    "wait_exited",
]

PROC = Path("/proc")
#: Larger than any /proc/<pid>/stat or status, so each is read in one call.
_READ_SIZE = 16 * 1024
#: The kernel's flag for its own threads (include/linux/sched.h).
_PF_KTHREAD = 0x00200000
#: The states of a task that has exited.
_DEAD = ("Z", "X")
#: Longest ancestor chain followed; deeper than any real process tree.
_MAX_DEPTH = 4096
#: Walks of a subtree made again when a process in it exited while it was read.
_SUBTREE_TRIES = 4


@dataclass(frozen=True)
class ProcessInfo:
    """One process as /proc shows it."""

    pid: int
    ppid: int
    pgrp: int
    session: int
    state: str  # its main thread's, or a live thread's once the main thread has ended
    starttime: int  # clock ticks after boot
    uid: int  # real uid
    threads: int

    @property
    def is_zombie(self) -> bool:
        """Dead and waiting to be reaped: it runs nothing and holds nothing open."""
        return self.state in _DEAD

    @property
    def key(self) -> tuple[int, int]:
        """The pid and start time: names this process and no later one with the same pid."""
        return (self.pid, self.starttime)


def read_process(pid: int) -> ProcessInfo | None:
    """The process `pid`, or None when it has gone."""
    try:
        stat = _read(f"{PROC}/{pid}/stat")
        # The command name (field 2) is in parentheses and may itself contain ") ".
        fields = stat[stat.rindex(b")") + 2:].split()
        # A kernel thread (field 9, flags: PF_KTHREAD, which no process can set on itself) is
        # root's and runs alone; most of /proc is kernel threads, so this skips most reads.
        status = b"" if int(fields[6]) & _PF_KTHREAD else _read(f"{PROC}/{pid}/status")
    except OSError:
        return None
    state = fields[0].decode("ascii", "replace")
    if state in _DEAD:
        state = _live_thread_state(pid) or state
    # Field 22 (starttime) is the 20th after the command name.
    return ProcessInfo(pid=pid, state=state, ppid=int(fields[1]),
                       pgrp=int(fields[2]), session=int(fields[3]), starttime=int(fields[19]),
                       uid=_status_field(status, b"\nUid:") if status else 0,
                       threads=_status_field(status, b"\nThreads:") if status else 1)


def _live_thread_state(pid: int) -> str | None:
    """The state of a thread of `pid` that has not exited, if any (see the module docstring)."""
    try:
        with os.scandir(f"{PROC}/{pid}/task") as entries:
            tids = [entry.name for entry in entries]
    except OSError:
        return None
    for tid in tids:
        try:
            stat = _read(f"{PROC}/{pid}/task/{tid}/stat")
        except OSError:
            continue
        state = stat[stat.rindex(b")") + 2:][:1].decode("ascii", "replace")
        if state not in _DEAD:
            return state
    return None


def _read(path: str) -> bytes:
    """A whole /proc file. Plain descriptors and string paths: a sweep reads two files per
    process several times per attempt, and pathlib's objects cost more than the reads."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, _READ_SIZE)
        # A seq_file hands over all it has when the buffer is larger: a short read is the end.
        while len(data) % _READ_SIZE == 0 and (more := os.read(fd, _READ_SIZE)):
            data += more
        return data
    finally:
        os.close(fd)


def _status_field(status: bytes, label: bytes) -> int:
    """The first number on the last line of `status` that starts with `label` (with its leading
    newline), or -1 when there is no such line. The last: the kernel's own fields come after
    the process's name, which the bundle chooses (though the kernel escapes newlines in it)."""
    at = status.rfind(label)
    if at < 0:
        return -1
    end = status.find(b"\n", at + 1)
    return int(status[at + len(label):end if end >= 0 else None].split(None, 1)[0])


def pids() -> list[int]:
    """Every pid /proc lists right now, the newest first: a process that has only just been
    forked is the likeliest to exit before it is read (reaper.py), so it is read first."""
    with os.scandir(PROC) as entries:
        return sorted((int(entry.name) for entry in entries if entry.name.isdigit()),
                      reverse=True)


def processes() -> Iterator[ProcessInfo]:
    """Every process (zombies included; check `is_zombie`)."""
    for pid in pids():
        info = read_process(pid)
        if info is not None:
            yield info


def table() -> dict[int, ProcessInfo]:
    """Every process by pid, read in one pass."""
    return {p.pid: p for p in processes()}


@cache
def children_listed() -> bool:
    """Whether this kernel lists each thread's children in /proc (CONFIG_PROC_CHILDREN)."""
    return os.path.exists(f"{PROC}/self/task/{threading.get_native_id()}/children")  # noqa: PTH110 - a string path, as every read here


def parse_children(data: bytes) -> list[int]:
    """The pids in a `children` file: each in decimal, followed by a space."""
    return [int(pid) for pid in data.split()]


def children(pid: int) -> list[int] | None:
    """The direct children of process `pid` (of any of its threads), or None when it has gone.
    A thread that exits hands its children to another of the process's threads, so a thread
    found gone is skipped; the caller walks again when a process vanished (`subtree`)."""
    try:
        with os.scandir(f"{PROC}/{pid}/task") as entries:
            tids = [entry.name for entry in entries]
    except OSError:
        return None
    found: list[int] = []
    for tid in tids:
        with suppress(FileNotFoundError, ProcessLookupError):
            found += parse_children(_read(f"{PROC}/{pid}/task/{tid}/children"))
    return found


def subtree(root: int) -> dict[int, ProcessInfo] | None:
    """`root` and every process below it, by pid, read by following the children files; None
    when this kernel has none, or when the tree kept changing under the walk.

    A process that exits while the walk is under way hands its children to the nearest child
    subreaper above it, possibly one already read, and they would be missed: a walk that found
    a process gone, or no longer the child of the one that listed it (reparented, or its pid
    reused), is made again. Processes forked after their parent was read are missed, as by any
    scan of /proc."""
    if not children_listed():
        return None
    for _ in range(_SUBTREE_TRIES):
        found = _walk(root)
        if found is not None:
            return found
    return None


def _walk(root: int) -> dict[int, ProcessInfo] | None:
    """One walk of `subtree`; None when the tree changed while it was read."""
    found: dict[int, ProcessInfo] = {}
    to_visit: list[tuple[int, int | None]] = [(root, None)]
    while to_visit:
        pid, parent = to_visit.pop()
        info = read_process(pid)
        below = children(pid)
        if info is None or below is None or pid in found \
                or (parent is not None and info.ppid != parent):
            return None
        found[pid] = info
        to_visit += [(child, pid) for child in below]
    return found


def ancestors(process: ProcessInfo, procs: Mapping[int, ProcessInfo]) -> Iterator[ProcessInfo]:
    """The parent, its parent and so on, as far as `procs` knows them (init last)."""
    seen = 0
    current = procs.get(process.ppid)
    while current is not None and seen < _MAX_DEPTH:
        yield current
        seen += 1
        current = procs.get(current.ppid) if current.ppid != current.pid else None


def descends_from(process: ProcessInfo, pid: int, procs: Mapping[int, ProcessInfo]) -> bool:
    """Whether `pid` is an ancestor of `process`."""
    return any(a.pid == pid for a in ancestors(process, procs))


def task_count(uid: int, procs: Iterable[ProcessInfo] | None = None) -> int:
    """Processes and threads of real uid `uid` (now, or in `procs`, read just now): what
    RLIMIT_NPROC counts against it."""
    return sum(max(p.threads, 1) for p in (processes() if procs is None else procs)
               if p.uid == uid)


def task_count_outside(uid: int, root: int, procs: Mapping[int, ProcessInfo]) -> int:
    """Processes and threads of real uid `uid` in the table `procs` that are neither `root`
    nor below it."""
    return task_count(uid, (p for p in procs.values()
                            if p.pid != root and not descends_from(p, root, procs)))


def open_pidfd(process: ProcessInfo) -> int | None:
    """A pidfd for exactly `process`, or None when it has gone (or its pid now names another)."""
    try:
        fd = os.pidfd_open(process.pid)
    except ProcessLookupError:
        return None
    # Opened first, checked second: once the pidfd exists the pid cannot be reused under it.
    now = read_process(process.pid)
    if now is None or now.starttime != process.starttime:
        os.close(fd)
        return None
    return fd


def send(fd: int, sig: signal.Signals) -> None:
    """Signal the process behind a pidfd; one that has already exited is left alone."""
    with suppress(ProcessLookupError):
        signal.pidfd_send_signal(fd, sig)


def wait_exited(fds: Iterable[int], timeout: float) -> set[int]:
    """Wait until the process behind each pidfd has exited; returns the fds still alive then.

    A pidfd becomes readable when its process exits (zombie or reaped), so nothing polls /proc.
    """
    poller = select.poll()
    pending = set(fds)
    for fd in pending:
        poller.register(fd, select.POLLIN)
    end = time.monotonic() + timeout
    while pending:
        remaining = end - time.monotonic()
        if remaining <= 0:
            break
        for fd, _ in poller.poll(remaining * 1000):
            pending.discard(fd)
            poller.unregister(fd)
    return pending


def reap(fd: int) -> bool:
    """Collect the exit status of the process behind `fd` if it is our exited child."""
    try:
        return os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG) is not None
    except ChildProcessError:  # not our child: its own parent (or init) collects it
        return False


def kill_and_wait(targets: Iterable[ProcessInfo], timeout: float) -> set[int]:
    """SIGKILL each process and wait until all have exited; returns the pids alive at `timeout`."""
    fds: dict[int, int] = {}
    try:
        for process in targets:
            fd = open_pidfd(process)
            if fd is not None:
                fds[fd] = process.pid
                send(fd, signal.SIGKILL)
        return {fds[fd] for fd in wait_exited(fds, timeout)}
    finally:
        for fd in fds:
            os.close(fd)
