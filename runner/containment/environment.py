"""The containment of one execution environment: probed at cold start, applied to every attempt.

Used like this:

    containment = Containment.start(settings, keep=[cache_dir])
    logger.info("containment", extra=containment.log_fields())
    ...
    with containment.attempt(label) as attempt:       # SandboxError when it is unsafe to run
        extract the bundle into attempt.dirs.task_root
        spec = replace(runtimes.child_spec(...), confinement=attempt.confinement(timeout_ms))
        outcome = run_invocation(InvocationSpec(child=spec, ...), settings, sweep=attempt.sweep)
    # here every process of the attempt is dead (confirmed through /proc) and reaped, the work
    # dir is gone, and what the child wrote in the scratch dirs (/tmp ...) is removed, and so
    # are the System V IPC objects it made (they outlive processes)

How, by what the runner is (`Isolation`):

- separate-uid: the runner is root (a container, CI, a developer's machine). The child runs as
  a dedicated unprivileged uid and gid with no supplementary groups, so it can neither read the
  runner's process nor write outside world-writable places. After each attempt every process
  of that uid goes, except those another runner on the machine holds below itself; and every
  file that uid owns in the scratch dirs, and every System V IPC object it owns or created.
- lambda: not root, in Lambda, where a uid cannot be changed. The child shares the runner's
  uid; the runner is non-dumpable, so the child cannot read its memory or environ. The
  execution environment is the runner's alone, so after each attempt every process of the uid
  that did not exist at cold start goes (runtime, extensions and runner excepted), every file
  of the uid in the scratch dirs except the runner's own (`keep`, e.g. the bundle cache), and
  every System V IPC object of the uid made since cold start.
- local: not root, on a developer's machine. As lambda, except that the developer's other
  processes and their /tmp are theirs: only processes below the runner (which is their child
  subreaper, so a double fork cannot leave that tree) are killed, and neither scratch dirs nor
  IPC objects are swept.

In all three, new processes below the runner are killed too. The child always gets resource
limits (`runner.containment.limits`). Which controls this environment allows is probed at cold
start and recorded (`log_fields`); when one the isolation relies on is missing, every attempt
fails with `SandboxError` (`Sandbox.Failure`) unless `containment_required` is off (local use
only). So does every attempt after one whose processes could not all be killed: the environment
is then no longer trusted.
"""

from __future__ import annotations

import enum
import os
import pwd
import resource
import stat
import subprocess
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from runner.containment import (
    hardening,
    limits,
    mqueue,
    procfs,
    reaper,
    scratch,
    seccomp,
    sysvipc,
)
from runner.containment.limits import Confinement
from runner.containment.procfs import ProcessInfo
from runner.containment.spawner import SPAWNER
from runner.containment.workdir import WorkDirs, attempt_dir
from runner.errors import CleanupFailedError, SandboxError
from runner.settings import Settings

__all__ = [
    "SWEEP_SECONDS",
    "Attempt",
    "Containment",
    "Controls",
    "Isolation",
    "StrayRule",
    "choose_isolation",
    "probe",
]

#: How long a sweep may take to kill everything before the runner gives up on the environment.
SWEEP_SECONDS = 10.0
#: A program every Linux has, run once as the sandbox uid to prove the runner can switch to it.
_TRUE = "/bin/true"


class Isolation(enum.StrEnum):
    """How the child is kept apart from the runner (see the module docstring)."""

    SEPARATE_UID = "separate-uid"
    LAMBDA = "lambda"
    LOCAL = "local"


def choose_isolation(settings: Settings, *, euid: int) -> Isolation:
    """Separate uid for a root runner; otherwise Lambda or local, as set or detected."""
    if euid == 0:
        return Isolation.SEPARATE_UID
    if settings.execution_environment == "auto":
        return Isolation.LAMBDA if settings.in_lambda else Isolation.LOCAL
    return Isolation(settings.execution_environment)


@dataclass(frozen=True)
class Controls:
    """What this environment allows, probed at cold start."""

    isolation: Isolation
    runner_uid: int
    child_uid: int
    child_gid: int
    dumpable_off: bool  # PR_SET_DUMPABLE 0 took: a same-uid child cannot read the runner
    subreaper: bool  # PR_SET_CHILD_SUBREAPER took: orphans come back to the runner
    setrlimit: bool  # resource limits can be set (checked on the runner's own core limit)
    proc_visible: bool  # /proc shows processes with their uid
    pidfd: bool  # pidfd_open works: processes are signalled and awaited without pid races
    separate_uid: bool  # a process was started as the sandbox uid (root only)
    work_root_reachable: bool  # every directory down to the work root is searchable by others
    sandbox_user: str | None  # the passwd name of the sandbox uid, if it has one (best none)
    seccomp: str  # the runner's own seccomp mode (2: a filter, as Lambda installs)
    child_filter: bool  # no_new_privs and the child's seccomp filter install (`seccomp`)

    @classmethod
    def unprobed(cls, settings: Settings, isolation: Isolation) -> Controls:
        """Controls of an environment whose probe itself failed: none is known to work."""
        separate = isolation is Isolation.SEPARATE_UID
        return cls(isolation=isolation, runner_uid=os.getuid(),
                   child_uid=settings.sandbox_uid if separate else os.getuid(),
                   child_gid=settings.sandbox_gid if separate else os.getgid(),
                   dumpable_off=False, subreaper=False, setrlimit=False, proc_visible=False,
                   pidfd=False, separate_uid=False, work_root_reachable=False,
                   sandbox_user=None, seccomp="unknown", child_filter=False)

    def missing(self) -> list[str]:
        """The controls this isolation relies on that did not work."""
        needed = ["setrlimit", "proc_visible", "pidfd", "child_filter"]
        if self.isolation is Isolation.SEPARATE_UID:
            needed += ["separate_uid", "work_root_reachable"]
        else:
            needed.append("dumpable_off")
        if self.isolation is Isolation.LOCAL:
            needed.append("subreaper")  # nothing else finds a double-forked daemon there
        lacking = [name for name in needed if not getattr(self, name)]
        if self.child_uid == 0:
            lacking.append("child_uid_not_root")
        return lacking

    def log_fields(self) -> dict[str, Any]:
        """The one structured log line a cold start writes about containment."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["isolation"] = str(self.isolation)
        return {"containment": {**values, "missing": self.missing()}}


def probe(settings: Settings, isolation: Isolation) -> Controls:
    """Harden this process (non-dumpable, child subreaper) and check what else works here."""
    separate = isolation is Isolation.SEPARATE_UID
    child_uid = settings.sandbox_uid if separate else os.getuid()
    child_gid = settings.sandbox_gid if separate else os.getgid()
    child_filter = seccomp.works(_TRUE, user=child_uid if separate else None,
                                 group=child_gid if separate else None)
    return Controls(
        isolation=isolation, runner_uid=os.getuid(), child_uid=child_uid, child_gid=child_gid,
        dumpable_off=hardening.make_undumpable(), subreaper=hardening.become_subreaper(),
        setrlimit=_setrlimit_works(), proc_visible=_proc_visible(), pidfd=_pidfd_works(),
        # The filter's probe ran as the sandbox uid: a second process is started only when it
        # failed, to tell which of the two controls is missing.
        separate_uid=separate and (child_filter or _can_run_as(child_uid, child_gid)),
        work_root_reachable=_searchable_by_others(settings.work_root),
        sandbox_user=_user_name(settings.sandbox_uid), seccomp=_seccomp_mode(),
        child_filter=child_filter,
    )


class Containment:
    """The runner's containment for one execution environment; see the module docstring."""

    def __init__(self, settings: Settings, controls: Controls, *, keep: Collection[Path] = (),
                 baseline: Collection[tuple[int, int]] = (),
                 ipc_baseline: Collection[tuple[str, int]] = ()) -> None:
        self.settings = settings
        self.controls = controls
        self._keep = frozenset(keep)
        self._baseline = frozenset(baseline)
        self._ipc_baseline = frozenset(ipc_baseline)
        # Tasks of the child's uid outside the runner's tree, as the last sweep's scan of /proc
        # counted them (none yet: the next attempt's start scans /proc itself).
        self._outside_tasks: int | None = None
        missing = controls.missing()
        self._refusal: str | None = None
        if missing and settings.containment_required:
            self._refusal = (
                f"containment: controls this runner relies on are missing here: "
                f"{', '.join(missing)} (set UDF_RUNNER_CONTAINMENT_REQUIRED=false to run "
                f"bundles anyway, for local use only)")

    @classmethod
    def start(cls, settings: Settings, *, keep: Iterable[Path] = ()) -> Containment:
        """Cold start: harden the runner, probe the environment, note the processes that exist,
        and clear what an earlier runner in this environment may have left. `keep` names the
        runner's own files in the scratch dirs (in Lambda, everything else of its uid there is
        removed after each attempt). Never raises, whatever an earlier bundle left here: a
        missing control or a failed cleanup becomes a refusal (`problem`), so the function
        still answers every task, with a result."""
        isolation = choose_isolation(settings, euid=os.geteuid())
        try:
            return cls._start(settings, isolation, tuple(keep))
        except Exception as e:  # whatever it was, no bundle may run here
            controls = Controls.unprobed(settings, isolation)
            containment = cls(settings, controls, keep=tuple(keep))
            containment._refusal = f"containment: cold start failed: {e!r}"
            return containment

    @classmethod
    def _start(cls, settings: Settings, isolation: Isolation,
               keep: tuple[Path, ...]) -> Containment:
        with suppress(OSError):  # what an earlier bundle left may be in the way until cleaned
            settings.work_root.mkdir(parents=True, exist_ok=True)
        controls = probe(settings, isolation)
        procs = procfs.table()  # one scan for both: the sandbox uid's processes, and ours
        baseline = [p.key for p in procs.values() if p.uid == controls.child_uid]
        containment = cls(settings, controls, keep=keep, baseline=baseline,
                          ipc_baseline=[o.key for o in sysvipc.objects()])
        if containment.problem is None:
            try:
                containment._clean(_descendants(procs))
            except SandboxError as e:
                containment._refusal = str(e)
        settings.work_root.mkdir(parents=True, exist_ok=True)
        return containment

    @property
    def problem(self) -> str | None:
        """Why no bundle may run here, or None."""
        return self._refusal

    def log_fields(self) -> dict[str, Any]:
        """The structured log line for cold start (log it with Powertools' `extra=`)."""
        fields_ = self.controls.log_fields()
        fields_["containment"]["refusal"] = self._refusal
        return fields_

    def get_ready(self) -> None:
        """Start what an attempt needs that takes a while to start: the spawner (tens of ms of
        an interpreter's start), so that it is ready when the child starts. Called as a task
        begins, beside its network steps rather than during the cold start, where it would
        take CPU from the runner's own."""
        if self._refusal is None:
            SPAWNER.start()

    @contextmanager
    def attempt(self, label: str) -> Iterator[Attempt]:
        """A contained attempt: its work dir, then, on the way out whatever happened, every
        process it left killed and reaped, the work dir removed and its scratch files too."""
        if self._refusal is not None:
            raise SandboxError(self._refusal)
        SPAWNER.start()  # (again, if it has ended) before the scan: never new in this attempt
        before, tasks_in_use = self._starting_set()
        owner = ((self.controls.child_uid, self.controls.child_gid)
                 if self.controls.isolation is Isolation.SEPARATE_UID else None)
        try:
            with attempt_dir(self.settings.work_root, label, owner=owner) as dirs:
                attempt = Attempt(self, dirs, before, tasks_in_use)
                try:
                    yield attempt
                finally:
                    if not attempt.swept:
                        attempt.sweep()
        except CleanupFailedError as e:
            self._refuse_after_cleanup(e)
            raise
        finally:
            if self._refusal is None:  # with a survivor about, files could reappear anyway
                self._clean_leftovers()

    def _starting_set(self) -> tuple[frozenset[tuple[int, int]], int]:
        """What runs below the runner as an attempt begins (never the attempt's), and the tasks
        of the child's uid (RLIMIT_NPROC is that count plus the bundle's allowance).

        Read from the runner's own tree (`procfs.subtree`): the uid's tasks outside it are
        those the last sweep's scan counted, once every process of the attempts before was
        dead. Without a count (the first attempt after a failed start) or a kernel listing
        children, one scan of /proc gives both."""
        uid, me = self.controls.child_uid, os.getpid()
        if self._outside_tasks is not None and (tree := procfs.subtree(me)) is not None:
            before = frozenset(p.key for p in tree.values() if p.pid != me)
            return before, self._outside_tasks + procfs.task_count(uid, tree.values())
        procs = procfs.table()
        return _descendants(procs), procfs.task_count(uid, procs.values())

    def _clean(self, before: Collection[tuple[int, int]]) -> None:
        """Kill what should not be running (processes below the runner that are not in
        `before`, and per the isolation those of the child's uid), then remove the files and
        System V IPC objects the child's uid left."""
        self.kill_strays(before)
        self._clean_leftovers()

    def kill_strays(self, before: Collection[tuple[int, int]]) -> int:
        """Kill and reap the processes an attempt left; confirmed through /proc. A failure
        refuses every later attempt: the environment can no longer be trusted."""
        try:
            swept = reaper.sweep(self._selector(before), SWEEP_SECONDS)
        except SandboxError as e:
            self._refusal = f"containment: an earlier attempt left processes behind ({e})"
            raise
        self._outside_tasks = procfs.task_count_outside(self.controls.child_uid, os.getpid(),
                                                        swept.table)
        return swept.killed

    def _selector(self, before: Collection[tuple[int, int]]) -> reaper.Selector:
        rule = StrayRule(runner_pid=os.getpid(), uid=self.controls.child_uid,
                         isolation=self.controls.isolation, before=frozenset(before),
                         baseline=self._baseline, spawner=SPAWNER.key)
        return rule.selects

    def _clean_leftovers(self) -> None:
        if self.controls.isolation is Isolation.LOCAL:
            return  # a developer's /tmp and IPC objects are theirs
        separate = self.controls.isolation is Isolation.SEPARATE_UID
        uid = self.controls.child_uid
        keep = self._keep | {self.settings.work_root} if separate else self._keep
        try:
            scratch.remove_owned([*self.settings.scratch_dirs, *mqueue.mounts()], uid,
                                 keep=keep)
            for obj in sysvipc.objects():
                if uid in (obj.uid, obj.cuid) and (separate or obj.key not in self._ipc_baseline):
                    sysvipc.remove(obj)
        except OSError as e:
            failed = CleanupFailedError(f"containment: could not remove what the bundle left: "
                                        f"{e}")
            self._refuse_after_cleanup(failed)
            raise failed from e

    def _refuse_after_cleanup(self, failed: CleanupFailedError) -> None:
        """What the bundle left is still here: no later bundle may run beside it."""
        self._refusal = (f"containment: an earlier attempt left what could not be removed "
                         f"({failed.message})")


@dataclass(frozen=True)
class StrayRule:
    """Which processes an attempt left: those below the runner that were not there before it,
    and per the isolation those of the child's uid (see the module docstring)."""

    runner_pid: int
    uid: int
    isolation: Isolation
    before: frozenset[tuple[int, int]]  # processes below the runner when the attempt began
    baseline: frozenset[tuple[int, int]]  # processes of the uid at cold start (lambda)
    spawner: tuple[int, int] | None = None  # the runner's spawner process (runner's uid)

    def selects(self, process: ProcessInfo, procs: Mapping[int, ProcessInfo]) -> bool:
        """Whether `process` (seen in the table `procs`) is a stray."""
        if process.pid == self.runner_pid or process.key == self.spawner:
            return False
        below = procfs.descends_from(process, self.runner_pid, procs)
        if below and process.key not in self.before:
            return True
        if process.uid != self.uid or self.isolation is Isolation.LOCAL:
            return False
        if self.isolation is Isolation.LAMBDA:
            return process.key not in self.baseline
        return below or _orphaned(process, self.uid, procs)


@dataclass
class Attempt:
    """One attempt inside a `Containment`: its directories and what to do to its child."""

    containment: Containment
    dirs: WorkDirs
    before: frozenset[tuple[int, int]]
    tasks_in_use: int  # processes and threads of the child's uid when the attempt began
    # A sweep has found nothing of the attempt left since its last child could start. Only a
    # process of the attempt (or the runner) can start one the sweep would select, so nothing
    # can have appeared since, and the attempt's end needs no sweep of its own.
    swept: bool = False

    def confinement(self, timeout_ms: int) -> Confinement:
        """The child's uid/gid (separate-uid), resource limits, and whether it gets the filter
        (and its uid's keyrings emptied: not a person's uid). Every child is started with one,
        so from here the attempt may have processes again."""
        self.swept = False
        controls = self.containment.controls
        rlimits = limits.child_rlimits(self.containment.settings, timeout_ms=timeout_ms,
                                       tasks_in_use=self.tasks_in_use)
        confined = {"confined": controls.child_filter,
                    "clear_keyrings": controls.isolation is not Isolation.LOCAL}
        if controls.isolation is not Isolation.SEPARATE_UID:
            return Confinement(rlimits=rlimits, **confined)
        return Confinement(user=controls.child_uid, group=controls.child_gid, rlimits=rlimits,
                           **confined)

    def sweep(self) -> None:
        """Kill and reap every process the attempt left (`run_invocation(..., sweep=...)`)."""
        self.containment.kill_strays(self.before)
        self.swept = True


def _descendants(procs: Mapping[int, ProcessInfo] | None = None) -> frozenset[tuple[int, int]]:
    """The processes below the runner now (or in the table `procs`, read just now)."""
    me = os.getpid()
    procs = procfs.table() if procs is None else procs
    return frozenset(p.key for p in procs.values() if procfs.descends_from(p, me, procs))


def _orphaned(process: ProcessInfo, uid: int, procs: Mapping[int, ProcessInfo]) -> bool:
    """Whether only processes of `uid` stand between `process` and init: no other runner holds
    it (a runner is a subreaper, so its bundle's orphans stay below it). A broken chain (a
    parent that exited during the scan) counts as held: the next scan sees it whole."""
    for ancestor in procfs.ancestors(process, procs):
        if ancestor.pid == 1:
            return True
        if ancestor.uid != uid:
            return False
    return False


def _setrlimit_works() -> bool:
    # Lowering the runner's own core limit is the probe, and wanted anyway: a core dump of the
    # runner would hold its credentials.
    try:
        hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
        resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
        return resource.getrlimit(resource.RLIMIT_CORE)[0] == 0
    except (OSError, ValueError):
        return False


def _proc_visible() -> bool:
    me = procfs.read_process(os.getpid())
    return me is not None and me.uid == os.getuid()


def _pidfd_works() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


def _can_run_as(uid: int, gid: int) -> bool:
    try:
        done = subprocess.run([_TRUE], user=uid, group=gid, extra_groups=[], check=False,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _searchable_by_others(path: Path) -> bool:
    try:
        return all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents))
    except OSError:
        return False


def _user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _seccomp_mode() -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Seccomp:"):
            return line.split()[1]
    return "unknown"
