"""Soak: 300 invocations in one runner process, successes, errors, timeouts and hostile bundles
mixed (among them each attack class of containment round 2: a thread group whose leader ended,
a deep directory tree, keys and message queues left for the next attempt, the kernel surface
the filter removes, signals aimed at the runner), must leave the runner as they found it: no
more descriptors, threads or child processes, and RSS within 10 MB of where it started (after
a warm-up)."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from runner.containment import procfs
from runner.errors import FunctionError, TimedOutError
from runner.settings import Settings
from tests.support.containment_harness import Runner

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0,
                       reason="the child gets a uid of its own only under a root runner"),
]

INVOCATIONS = 300
WARM_UP = 20
RSS_GROWTH_LIMIT = 10 * 1024 * 1024


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def _measure(sandbox_uid: int) -> dict[str, int]:
    me = os.getpid()
    procs = procfs.table()
    below = [p for p in procs.values() if procfs.descends_from(p, me, procs)]
    return {
        "fds": sum(1 for _ in Path("/proc/self/fd").iterdir()),
        "threads": _status("Threads"),
        "child_processes": sum(not p.is_zombie for p in below),
        # Dead children of the bundle's uid left unreaped (other tests' orphans may be too).
        "unreaped": sum(p.is_zombie and p.uid == sandbox_uid for p in below),
        "rss_bytes": _status("VmRSS") * 1024,
    }


def _mix(shared: Path) -> list[tuple[dict[str, Any], int, type[Exception] | None]]:
    """One round of the mix: (event, timeout_ms, expected error)."""
    return [
        ({"case": "ok"}, 10_000, None),
        ({"case": "error"}, 10_000, FunctionError),
        ({"case": "hang"}, 300, TimedOutError),
        ({"case": "daemon", "marker": str(shared / "marker"), "delay": 600}, 10_000, None),
        ({"case": "fork_storm", "count": 20}, 10_000, None),
        ({"case": "forge_logs"}, 10_000, None),
        ({"case": "open_files", "count": 2000}, 10_000, None),
        ({"case": "ignore_term"}, 10_000, None),
        ({"case": "litter", "tag": uuid.uuid4().hex, "dirs": [str(shared)]}, 10_000, None),
        ({"case": "sigstop_group"}, 300, TimedOutError),
        ({"case": "zombie_leader", "marker": str(shared / "zombie-marker"), "delay": 600},
         10_000, None),
        ({"case": "deep_tree", "depth": 300, "tag": uuid.uuid4().hex,
          "dirs": [str(shared), "$HOME"]}, 10_000, None),
        ({"case": "keep_secrets", "secret": uuid.uuid4().hex}, 10_000, None),
        ({"case": "find_secrets"}, 10_000, None),
        ({"case": "kernel_surface"}, 10_000, None),
        ({"case": "signal_runner_every_way"}, 10_000, None),
    ]


def test_300_mixed_invocations_leave_no_growth(settings: Settings, work_root: Path) -> None:
    shared = work_root.parent / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    runner = Runner(settings.model_copy(update={
        "term_grace_ms": 100, "scratch_dirs": (*settings.scratch_dirs, shared)}))
    mix = _mix(shared)

    def invoke(n: int) -> None:
        event, timeout_ms, expected = mix[n % len(mix)]
        got = runner.invoke(event, timeout_ms=timeout_ms, keep_lines=False)
        if expected is None:
            assert got.error is None, (event, got.error)
        else:
            assert isinstance(got.error, expected), (event, got.error)
        if event["case"] == "find_secrets":
            assert got.response == {"found": {}}
        if event["case"] in ("kernel_surface", "signal_runner_every_way"):
            assert set(got.response.values()) <= {"EPERM", "ENOSYS"}, got.response

    for n in range(WARM_UP):
        invoke(n)
    before = _measure(settings.sandbox_uid)
    for n in range(INVOCATIONS):
        invoke(n)
    after = _measure(settings.sandbox_uid)
    growth = after["rss_bytes"] - before["rss_bytes"]
    sys.stdout.write(f"\nsoak: {INVOCATIONS} invocations; before {before}; after {after}; "
                     f"RSS growth {growth / 1024 / 1024:.2f} MiB\n")
    assert after["fds"] <= before["fds"]
    assert after["threads"] <= before["threads"]
    assert after["child_processes"] <= before["child_processes"]
    assert after["unreaped"] == 0
    assert growth < RSS_GROWTH_LIMIT
    assert [p.pid for p in procfs.processes() if p.uid == settings.sandbox_uid] == []
    assert list(shared.iterdir()) == []
