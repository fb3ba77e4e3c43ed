"""Hostile bundles through the whole pipeline (S3, token, cache, extraction, containment), as the
handler runs them: each leaves nothing behind, and the next task in the same pipeline succeeds.
(tests/integration/runner/test_hostile.py covers every case at the containment level.)"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.bundles import zip_files
from runner.containment import procfs
from tests.support.containment_harness import bundle_files, runs
from tests.support.tasks import Tasks, response_of

HOSTILE = zip_files(bundle_files())


def _run(tasks: Tasks, event: dict[str, Any], **payload: Any) -> Any:
    return tasks.run_bundle(HOSTILE, handler=None, event=event, **payload)


def _alive(pid: int) -> bool:
    process = procfs.read_process(pid)
    return process is not None and not process.is_zombie


@pytest.fixture
def hostile(tasks: Tasks) -> Iterator[Tasks]:
    """After the test's task: the sandbox uid runs nothing, no attempt dir is left, and the
    next task in the same pipeline succeeds."""
    yield tasks
    uid = tasks.settings.sandbox_uid if os.geteuid() == 0 else os.getuid()
    assert [p.pid for p in procfs.processes() if p.uid == uid and not p.is_zombie] == []
    attempts = tasks.settings.work_root / "attempts"
    assert not attempts.exists() or list(attempts.iterdir()) == []
    assert response_of(_run(tasks, {"case": "ok"}))


def test_a_setsid_double_forked_daemon_does_not_outlive_the_task(hostile: Tasks,
                                                                 work_root: Path) -> None:
    marker = work_root / "daemon-marker"

    got = response_of(_run(hostile, {"case": "daemon", "marker": str(marker), "delay": 5}))

    # Killed and reaped before the result came back: it can never write its marker.
    assert not _alive(got["daemon"])
    assert not marker.exists()


def test_a_daemon_whose_main_thread_ended_does_not_outlive_the_task(hostile: Tasks,
                                                                    shared: Path) -> None:
    # SYS_exit on its main thread: a zombie leader, and a thread that reads every environ it
    # can for the next task's token (the fixture runs that next task).
    marker = shared / "zombie-leader-marker"

    got = response_of(_run(hostile, {"case": "zombie_leader", "marker": str(marker),
                                     "delay": 5}))

    assert not runs(got["daemon"])
    assert not marker.exists()


@pytest.mark.usefixtures("lambdas_descriptor_limit")
def test_a_deep_directory_tree_neither_fails_the_task_nor_the_next_cold_start(
        hostile: Tasks, shared: Path) -> None:
    got = response_of(_run(hostile, {"case": "deep_tree", "depth": 1200, "tag": "pipeline",
                                     "dirs": ["/tmp", "$HOME", "$TMPDIR"]}))

    assert not Path(got["made"]["/tmp"]).exists()
    # A new execution environment on the same machine starts clean and runs bundles.
    fresh = Tasks(hostile.stack, hostile.settings)
    assert fresh.pipeline._containment.problem is None
    assert response_of(_run(fresh, {"case": "ok"}))


def test_keys_and_message_queues_never_reach_the_next_task(hostile: Tasks) -> None:
    secret = uuid.uuid4().hex

    kept = response_of(_run(hostile, {"case": "keep_secrets", "secret": secret}))
    found = response_of(_run(hostile, {"case": "find_secrets"}))

    assert kept["user_key"] in {"EPERM", "ENOSYS"}
    assert found == {"found": {}}


def test_files_left_in_tmp_and_home_are_removed(hostile: Tasks) -> None:
    got = response_of(_run(hostile, {"case": "litter", "tag": "pipeline"}))

    assert got["made"]
    assert [path for path in got["made"] if Path(path).exists() or Path(path).is_symlink()] \
        == []


def test_a_fork_storm_is_bounded_and_swept(hostile: Tasks) -> None:
    got = response_of(_run(hostile, {"case": "fork_storm", "count": 500}))

    # RLIMIT_NPROC stops it short of 500 (settings.child_max_processes, 256 by default).
    assert got["refused"] == "EAGAIN"
    assert got["started"] < hostile.settings.child_max_processes


def test_a_bundle_cannot_rewrite_the_cached_zip(hostile: Tasks, work_root: Path) -> None:
    first = _run(hostile, {"case": "ok"})
    assert first.bundle is not None
    cached = work_root / "cache" / f"{first.bundle.sha256}.zip"

    got = response_of(_run(hostile, {"case": "rewrite_cache", "path": str(cached)}))
    again = _run(hostile, {"case": "ok"})

    assert got["rewrite"] != "done"
    assert got["replace"] != "done"
    assert cached.read_bytes() == HOSTILE
    assert again.bundle is not None
    assert again.bundle.cache_hit


def test_a_bundle_that_stops_its_own_group_times_out(hostile: Tasks) -> None:
    result = _run(hostile, {"case": "sigstop_group"}, timeout_ms=1000)

    assert result.error is not None
    assert result.error.type == "Sandbox.Timedout"
