"""Containment's rules, without processes: which isolation, which controls are required (and
failing closed without them), which processes are strays, and the child's resource limits."""

from __future__ import annotations

import dataclasses
import resource
from pathlib import Path

import pytest

from runner.containment import Containment, Controls, Isolation, StrayRule, choose_isolation, limits
from runner.containment.procfs import ProcessInfo
from runner.errors import SandboxError
from runner.settings import Settings

LAMBDA_ENV = {"AWS_LAMBDA_FUNCTION_NAME": "udf", "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"}


def _controls(isolation: Isolation = Isolation.SEPARATE_UID, **changes: object) -> Controls:
    """Controls as a healthy environment of `isolation` reports them."""
    separate = isolation is Isolation.SEPARATE_UID
    healthy = Controls(
        isolation=isolation, runner_uid=0 if separate else 993,
        child_uid=64200 if separate else 993, child_gid=64200 if separate else 990,
        dumpable_off=True, subreaper=True, setrlimit=True,
        proc_visible=True, pidfd=True, separate_uid=separate, work_root_reachable=True,
        sandbox_user=None, seccomp="2", child_filter=True)
    return dataclasses.replace(healthy, **changes)  # type: ignore[arg-type]


# Which isolation


def test_a_root_runner_always_gets_a_separate_uid() -> None:
    in_lambda = Settings.from_env({"UDF_RUNNER_EXECUTION_ENVIRONMENT": "lambda", **LAMBDA_ENV})
    assert choose_isolation(in_lambda, euid=0) is Isolation.SEPARATE_UID


def test_lambda_is_detected_from_its_own_variables_when_not_root() -> None:
    assert choose_isolation(Settings.from_env(LAMBDA_ENV), euid=993) is Isolation.LAMBDA
    assert choose_isolation(Settings.from_env({}), euid=1000) is Isolation.LOCAL
    only_name = {"AWS_LAMBDA_FUNCTION_NAME": "udf"}  # a developer's shell might set one
    assert choose_isolation(Settings.from_env(only_name), euid=1000) is Isolation.LOCAL


def test_detection_is_not_a_setting() -> None:
    assert not Settings.from_env({"UDF_RUNNER_IN_LAMBDA": "true"}).in_lambda


def test_the_setting_overrides_detection() -> None:
    local = {"UDF_RUNNER_EXECUTION_ENVIRONMENT": "local", **LAMBDA_ENV}
    assert choose_isolation(Settings.from_env(local), euid=993) is Isolation.LOCAL
    lambda_ = {"UDF_RUNNER_EXECUTION_ENVIRONMENT": "lambda"}
    assert choose_isolation(Settings.from_env(lambda_), euid=1000) is Isolation.LAMBDA


# Required controls and failing closed


@pytest.mark.parametrize("isolation", list(Isolation))
def test_a_healthy_environment_misses_nothing(isolation: Isolation) -> None:
    assert _controls(isolation).missing() == []


@pytest.mark.parametrize(("isolation", "broken", "required"), [
    (Isolation.LAMBDA, "dumpable_off", True),
    (Isolation.LOCAL, "dumpable_off", True),
    (Isolation.SEPARATE_UID, "dumpable_off", False),  # another uid cannot read root anyway
    (Isolation.SEPARATE_UID, "separate_uid", True),
    (Isolation.SEPARATE_UID, "work_root_reachable", True),
    (Isolation.LAMBDA, "setrlimit", True),
    (Isolation.SEPARATE_UID, "proc_visible", True),
    (Isolation.LAMBDA, "pidfd", True),
    (Isolation.LOCAL, "subreaper", True),  # only the process tree finds a daemon there
    (Isolation.LAMBDA, "subreaper", False),  # the uid scan does
    (Isolation.LAMBDA, "child_filter", True),  # the only thing between the child and the runner
    (Isolation.SEPARATE_UID, "child_filter", True),
    (Isolation.LOCAL, "child_filter", True),
])
def test_each_control_an_isolation_relies_on_is_required(isolation: Isolation, broken: str,
                                                          required: bool) -> None:
    missing = _controls(isolation, **{broken: False}).missing()
    assert missing == ([broken] if required else [])


def test_a_root_child_is_never_acceptable() -> None:
    assert _controls(Isolation.LAMBDA, child_uid=0).missing() == ["child_uid_not_root"]


def test_a_missing_control_refuses_every_attempt(settings: Settings) -> None:
    containment = Containment(settings, _controls(Isolation.LAMBDA, dumpable_off=False))
    assert containment.problem is not None
    assert "dumpable_off" in containment.problem
    with pytest.raises(SandboxError, match="dumpable_off") as caught, \
            containment.attempt("t/1"):
        pass
    assert caught.value.error_type == "Sandbox.Failure"
    assert not (settings.work_root / "attempts").exists()  # refused before anything was made


def test_the_setting_relaxes_failing_closed_for_local_use(work_root: Path) -> None:
    relaxed = Settings(work_root=work_root, containment_required=False)
    containment = Containment(relaxed, _controls(Isolation.LOCAL, dumpable_off=False))
    assert containment.problem is None
    assert containment.log_fields()["containment"]["missing"] == ["dumpable_off"]


def test_controls_make_one_structured_log_line(settings: Settings) -> None:
    containment = Containment(settings, _controls(Isolation.LAMBDA, setrlimit=False))
    line = containment.log_fields()["containment"]
    assert line["isolation"] == "lambda"
    assert line["dumpable_off"] is True
    assert line["setrlimit"] is False
    assert line["missing"] == ["setrlimit"]
    assert "setrlimit" in line["refusal"]
    assert {"runner_uid", "child_uid", "subreaper", "proc_visible", "pidfd", "separate_uid",
            "seccomp"} <= set(line)


# Which processes are strays

RUNNER = 100
SANDBOX = 64200


def _p(pid: int, ppid: int, uid: int) -> ProcessInfo:
    return ProcessInfo(pid=pid, ppid=ppid, pgrp=pid, session=pid, state="S", starttime=pid,
                       uid=uid, threads=1)


def _table(*procs: ProcessInfo) -> dict[int, ProcessInfo]:
    base = [_p(1, 0, 0), _p(RUNNER, 1, 0)]
    return {p.pid: p for p in (*base, *procs)}


Keys = frozenset[tuple[int, int]]


def _rule(isolation: Isolation, uid: int = SANDBOX, before: Keys = frozenset(),
          baseline: Keys = frozenset()) -> StrayRule:
    return StrayRule(runner_pid=RUNNER, uid=uid, isolation=isolation, before=before,
                     baseline=baseline)


def test_new_processes_below_the_runner_are_strays_in_every_isolation() -> None:
    procs = _table(_p(200, RUNNER, SANDBOX), _p(201, 200, 0))  # 201: a setuid program it ran
    for isolation in Isolation:
        rule = _rule(isolation)
        assert rule.selects(procs[200], procs)
        assert rule.selects(procs[201], procs)
        assert not rule.selects(procs[RUNNER], procs)


def test_processes_below_the_runner_from_before_the_attempt_are_left_alone() -> None:
    procs = _table(_p(300, RUNNER, 0))  # e.g. the local stack's own server
    assert not _rule(Isolation.LOCAL, before=frozenset({procs[300].key})).selects(procs[300],
                                                                                  procs)


def test_separate_uid_kills_orphans_of_the_sandbox_uid_but_not_another_runners() -> None:
    procs = _table(
        _p(400, 1, SANDBOX), _p(401, 400, SANDBOX),  # orphaned, and its child
        _p(500, 1, 0), _p(501, 500, SANDBOX),  # below another runner (a root process)
        _p(600, 1, 1000),  # another user's
    )
    rule = _rule(Isolation.SEPARATE_UID)
    assert rule.selects(procs[400], procs)
    assert rule.selects(procs[401], procs)
    assert not rule.selects(procs[501], procs)
    assert not rule.selects(procs[600], procs)
    broken = {k: v for k, v in procs.items() if k != 400}  # 400 exited during the scan
    assert not rule.selects(procs[401], broken)  # seen whole on the next scan


def test_lambda_kills_every_process_of_its_uid_not_there_at_cold_start() -> None:
    runtime, extension, stray = _p(2, 1, 993), _p(3, 1, 993), _p(700, 1, 993)
    procs = _table(runtime, extension, stray, _p(800, 1, 0))
    rule = _rule(Isolation.LAMBDA, uid=993, baseline=frozenset({runtime.key, extension.key}))
    assert [p.pid for p in procs.values() if rule.selects(p, procs)] == [700]


def test_local_never_touches_processes_outside_the_runner() -> None:
    procs = _table(_p(900, 1, 1000))  # the developer's editor, started after cold start
    assert not _rule(Isolation.LOCAL, uid=1000).selects(procs[900], procs)


# The child's resource limits


def test_limits_follow_the_settings_and_the_deadline(settings: Settings) -> None:
    custom = settings.model_copy(update={"child_max_open_files": 100, "child_max_processes": 50,
                                         "child_max_file_bytes": 1 << 20})
    got = limits.child_rlimits(custom, timeout_ms=2500, tasks_in_use=7)
    assert got[resource.RLIMIT_CORE] == 0
    assert got[resource.RLIMIT_NOFILE] == min(100, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    assert got[resource.RLIMIT_FSIZE] == 1 << 20
    assert got[resource.RLIMIT_NPROC] == 57
    assert got[resource.RLIMIT_CPU] == limits.cpu_seconds(2500) >= 4
    assert resource.RLIMIT_AS not in got  # it would break V8 and WebAssembly


def test_the_data_limit_defaults_to_the_function_memory(settings: Settings) -> None:
    assert limits.data_bytes(settings) == settings.function_memory_mb * limits.MIB
    assert limits.data_bytes(settings.model_copy(update={"child_max_data_bytes": 5})) == 5


def test_no_limit_exceeds_the_runners_own_hard_limit(settings: Settings) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    huge = settings.model_copy(update={"child_max_open_files": 2**40})
    got = limits.child_rlimits(huge, timeout_ms=1000, tasks_in_use=0)[resource.RLIMIT_NOFILE]
    assert got == (2**40 if hard == resource.RLIM_INFINITY else hard)


def test_scratch_dirs_read_from_the_environment_as_a_path_list() -> None:
    settings = Settings.from_env({"UDF_RUNNER_SCRATCH_DIRS": "/a::/b/c"})
    assert settings.scratch_dirs == (Path("/a"), Path("/b/c"))
    assert Path("/tmp") in Settings().scratch_dirs


@pytest.mark.parametrize("isolation", list(Isolation))
def test_controls_that_could_not_be_probed_refuse_everything(isolation: Isolation) -> None:
    missing = Controls.unprobed(Settings(), isolation).missing()
    assert "child_filter" in missing
    assert "pidfd" in missing
