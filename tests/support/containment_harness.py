"""The hostile bundle (tests/fixtures/hostile) run through the runner's containment.

`Runner` holds what the Lambda handler holds for an execution environment: one `Containment`,
started at cold start, then one attempt after another. An attempt is driven the way the
pipeline drives it: the contained attempt dir, the bundle put in as if extracted,
`runtimes.child_spec`, `attempt.contain`, then `run_invocation(..., sweep=attempt.sweep)`.

`Footprint` is what a test compares before and after: processes, descriptors, threads, the
environment and files, so that "nothing is left behind" is one assertion.

Run as a module (`python -m tests.support.containment_harness`) it is a runner process of its
own, for what cannot be shown inside pytest: a runner whose environment holds a secret from its
start, one that is not root. It reads a JSON job on stdin and writes one JSON line per invocation.
"""

from __future__ import annotations

import ctypes
import json
import os
import stat
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from runner import runtimes
from runner.containment import Containment, procfs, sysvipc
from runner.containment.hardening import PR_SET_DUMPABLE
from runner.containment.spawner import SPAWNER
from runner.errors import RunnerError
from runner.invoke.driver import InvocationSpec, run_invocation
from runner.models import LogsInfo
from runner.settings import Settings
from tests.support.bundles import write_tree

HOSTILE = Path(__file__).parents[1] / "fixtures" / "hostile"
TASK_ID = "hostile-task"
LABEL = f"{TASK_ID}/1"


def bundle_files() -> dict[str, tuple[bytes, int]]:
    """The hostile bundle's files with their modes, as extraction leaves them."""
    return {path.name: (path.read_bytes(), 0o755 if path.name == "bootstrap" else 0o644)
            for path in HOSTILE.iterdir() if path.is_file()}


@dataclass
class Invoked:
    """What one invocation gave: the parsed response or the error, and the output."""

    response: Any
    error: RunnerError | None
    logs: LogsInfo
    lines: list[str] = field(default_factory=list)

    @property
    def error_type(self) -> str | None:
        return self.error.error_type if self.error is not None else None


class Runner:
    """A runner's containment and the attempts it runs, in this process."""

    def __init__(self, settings: Settings, *, keep: Iterable[Path] = (),
                 user_env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.user_env = user_env or {}
        self.files = bundle_files()
        self.containment = Containment.start(settings, keep=keep)

    def invoke(self, event: dict[str, Any], *, timeout_ms: int = 10_000,
               on_line: Callable[[str], None] | None = None, keep_lines: bool = True) -> Invoked:
        """Run the bundle for one invocation of `event`."""
        lines: list[str] = []

        def sink(line: str) -> None:
            if keep_lines:
                lines.append(line)
            if on_line is not None:
                on_line(line)

        try:
            with self.containment.attempt(LABEL) as attempt:
                write_tree(attempt.dirs.task_root, self.files)
                task = runtimes.TaskEnvironment(task_id=TASK_ID, attempt=1, token="test-token",
                                                user_env=self.user_env)
                spec = runtimes.child_spec("provided", attempt.dirs, None, task, self.settings)
                outcome = run_invocation(InvocationSpec(
                    child=replace(spec, confinement=attempt.confinement(timeout_ms)),
                    event=json.dumps(event).encode(),
                    timeout_ms=timeout_ms, function_arn=runtimes.function_arn(self.settings),
                    label=LABEL,
                ), self.settings, sink=sink, sweep=attempt.sweep)
        except RunnerError as e:
            return Invoked(None, e, LogsInfo(), lines)
        response = json.loads(outcome.response.body) if outcome.response is not None else None
        return Invoked(response, outcome.error, outcome.logs, lines)


@dataclass(frozen=True)
class Footprint:
    """What an attempt could leave behind, as seen from the runner (this process)."""

    # Processes of the child's uid: live ones anywhere, and dead ones this process should reap.
    uid_processes: frozenset[tuple[int, int]]
    descendants: frozenset[tuple[int, int]]  # live processes below this one
    fds: frozenset[str]  # this process's open descriptors, as /proc/self/fd names them
    threads: int
    environ: tuple[tuple[str, str], ...]
    files: frozenset[str]  # what the child's uid owns in the scratch dirs, and the work root
    ipc: frozenset[tuple[str, int]]  # System V IPC objects of the child's uid

    @classmethod
    def take(cls, settings: Settings, uid: int) -> Footprint:
        me = os.getpid()
        procs = procfs.table()
        return cls(
            uid_processes=frozenset(
                p.key for p in procs.values() if p.uid == uid and p.pid != me
                and (not p.is_zombie or procfs.descends_from(p, me, procs))),
            descendants=frozenset(p.key for p in procs.values()
                                  if not p.is_zombie and procfs.descends_from(p, me, procs)),
            fds=frozenset(_fds()),
            threads=threading.active_count(),
            environ=tuple(sorted((k, v) for k, v in os.environ.items()
                                 if k != "PYTEST_CURRENT_TEST")),  # pytest's own, per phase
            files=frozenset(_owned(settings.scratch_dirs, uid) | _tree(settings.work_root)),
            ipc=frozenset(o.key for o in sysvipc.objects() if uid in (o.uid, o.cuid)),
        )


def runs(pid: int) -> bool:
    """Whether any thread of process `pid` is alive, read from /proc/<pid>/task itself (a
    process whose main thread ended shows as a zombie in /proc/<pid>/stat while others run)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return False
    for task in tasks:
        try:
            stat_line = (task / "stat").read_text()
        except FileNotFoundError:
            continue
        if stat_line[stat_line.rindex(")") + 2] not in "ZX":
            return True
    return False


def _fds() -> Iterable[str]:
    for path in Path("/proc/self/fd").iterdir():
        try:
            yield f"{path.name}->{path.readlink()}"
        except FileNotFoundError:  # the descriptor the listing itself used
            continue


def _owned(dirs: Iterable[Path], uid: int) -> set[str]:
    """Entries owned by `uid` in `dirs`, looking into world-writable directories."""
    found: set[str] = set()
    for directory in dirs:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # another process's temporary file (a compiler's), gone since the scan
            if info.st_uid == uid:
                found.add(entry.path)
            elif stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_IWOTH:
                found |= _owned([Path(entry.path)], uid)
    return found


def _tree(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*")} if root.exists() else set()


def _set_dumpable(flag: bool) -> None:
    if ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, int(flag), 0, 0, 0) != 0:
        raise OSError("prctl(PR_SET_DUMPABLE) failed")


def _main() -> None:
    """A runner process: `{"settings", "drop_to", "undo_hardening", "env", "events",
    "timeout_ms"}`
    on stdin; one line of `{"response", "error_type", "lines"}` per event on stdout."""
    job = json.load(sys.stdin)
    settings = Settings.model_validate(job["settings"])
    if job.get("drop_to"):
        # Everything is imported by now: the interpreter's files are not readable by this uid,
        # so the spawner (a fresh interpreter) is started first; it starts each child as the
        # uid the runner names.
        SPAWNER.start()
        uid, gid = job["drop_to"]
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        # A uid change leaves a process non-dumpable; an ordinary runtime process is not.
        _set_dumpable(True)
    runner = Runner(settings, keep=[Path(p) for p in job.get("keep", [])],
                    user_env=job.get("env"))
    if job.get("undo_hardening"):  # the control case: what a child sees without the fix
        _set_dumpable(True)
    print(json.dumps({"controls": runner.containment.log_fields()}), flush=True)
    for event in job["events"]:
        got = runner.invoke(event, timeout_ms=job.get("timeout_ms", 10_000))
        print(json.dumps({"response": got.response, "error_type": got.error_type,
                          "error": got.error.message if got.error else None,
                          "lines": got.lines}), flush=True)


if __name__ == "__main__":
    _main()
