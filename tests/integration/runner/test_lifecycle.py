"""The child's lifecycle through `run_invocation`: every way it can end, and nothing left behind.

The bootstraps are in `tests/fixtures/bash/lifecycle` (one script, `_HANDLER` picks what it
does). Those that would leave processes print their pid, which is also their process group and
session; afterwards /proc must hold nothing of that group. Timeouts are short: a hanging child
is ended by the runner's own deadline, never by waiting in the test.
"""

from __future__ import annotations

import base64
import contextlib
import os
import select
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.containment import procfs
from runner.settings import Settings
from tests.support import bundles, fixture_bundles

LIFECYCLE = fixture_bundles.bash_bundle("lifecycle")
SHORT_TIMEOUT_MS = 1000
#: A safety net for waits on events that should already have happened (never reached when
#: the code works).
SAFETY_S = 10.0


def _left_of(pid: int) -> list[procfs.ProcessInfo]:
    """Live processes still in the child's process group or session."""
    return [p for p in procfs.processes()
            if pid in (p.pgrp, p.session) and not p.is_zombie]


def _error(run: fixture_bundles.Run) -> tuple[str, str]:
    assert run.result.status == "failed", run.result
    assert run.result.error is not None
    return run.result.error.type, run.result.error.message


def test_exit_status_3_is_an_exit_error(settings: Settings) -> None:
    run = fixture_bundles.invoke(LIFECYCLE, settings, handler="exit3")

    error_type, message = _error(run)
    assert error_type == "Runtime.ExitError"
    assert message == (f"RequestId: {run.outcome.request_id} Error: Runtime exited with error: "
                       "exit status 3")
    assert run.result.error is not None
    assert run.result.error.function_error is None
    assert "init" in run.result.timings_ms
    assert "invoke" not in run.result.timings_ms


def test_exit_status_0_without_an_answer_is_an_exit_error(settings: Settings) -> None:
    run = fixture_bundles.invoke(LIFECYCLE, settings, handler="exit0")

    error_type, message = _error(run)
    assert error_type == "Runtime.ExitError"
    assert message.endswith("Error: Runtime exited without providing a reason")


def test_death_by_signal_names_the_signal(settings: Settings) -> None:
    run = fixture_bundles.invoke(LIFECYCLE, settings, handler="signal")

    error_type, message = _error(run)
    assert error_type == "Runtime.ExitError"
    assert message.endswith("Error: Runtime exited with error: signal: killed (SIGKILL)")


def test_a_bootstrap_that_cannot_start_is_an_exit_error(settings: Settings,
                                                        tmp_path: Path) -> None:
    bundle = bundles.write_tree(tmp_path / "bundle", {"bootstrap": ("#!/bin/sh\n", 0o644)})

    run = fixture_bundles.invoke(bundle, settings)

    error_type, message = _error(run)
    assert error_type == "Runtime.ExitError"
    assert "Runtime failed to start: Permission denied" in message


def test_a_hanging_handler_times_out_and_nothing_is_left(settings: Settings) -> None:
    run = fixture_bundles.invoke(LIFECYCLE, settings, handler="hang", timeout_ms=SHORT_TIMEOUT_MS)

    error_type, message = _error(run)
    assert error_type == "Sandbox.Timedout"
    assert message == (f"RequestId: {run.outcome.request_id} Error: Task timed out after "
                       "1.00 seconds")
    assert run.printed("took the event") == ["; never answering"]
    assert _left_of(run.pid()) == []
    assert {"init", "invoke"} <= set(run.result.timings_ms)


def test_a_runtime_that_never_calls_next_times_out(settings: Settings) -> None:
    run = fixture_bundles.invoke(LIFECYCLE, settings, handler="no-next",
                                 timeout_ms=SHORT_TIMEOUT_MS)

    error_type, _ = _error(run)
    assert error_type == "Sandbox.Timedout"
    assert _left_of(run.pid()) == []
    assert "init" in run.result.timings_ms
    assert "invoke" not in run.result.timings_ms


@pytest.fixture
def blackhole() -> Iterator[socket.socket]:
    """A TCP server that accepts and never answers, so a client of it blocks for ever."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(SAFETY_S)
        yield server


def test_the_group_kill_takes_a_blocked_curl(settings: Settings,
                                             blackhole: socket.socket) -> None:
    host, port = blackhole.getsockname()
    run = fixture_bundles.invoke(LIFECYCLE, settings, handler="orphan-curl",
                          timeout_ms=SHORT_TIMEOUT_MS, user_env={"BLACKHOLE": f"{host}:{port}"})

    assert _error(run)[0] == "Sandbox.Timedout"
    # curl did connect (so it was blocked when bash got SIGTERM) ...
    conn, _ = blackhole.accept()
    with conn:
        conn.settimeout(SAFETY_S)
        # ... and it is gone: its end of the connection was closed when it died.
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := conn.recv(65536):
                received += chunk
        assert received.startswith(b"GET / HTTP/1.1\r\n")  # its request, then nothing
    assert _left_of(run.pid()) == []


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(settings: Settings) -> None:
    run = fixture_bundles.invoke(LIFECYCLE, settings, handler="ignore-term")

    assert run.result.status == "succeeded", run.result
    assert run.result.response == "answered"
    # It was told to stop and did not: only SIGKILL, after the grace, took it.
    assert "got SIGTERM, ignoring it" in run.printed("")
    assert _left_of(run.pid()) == []


def test_output_is_bounded_counted_and_tailed(settings: Settings) -> None:
    run = fixture_bundles.invoke(LIFECYCLE, settings, handler="noisy")

    assert run.result.status == "succeeded", run.result
    logs = run.result.logs
    assert logs.bytes == 3072 * 1024 + len("LAST LINE\n")
    assert logs.truncated is True
    assert logs.tail.endswith("x\nLAST LINE\n")
    assert len(logs.tail.encode()) == settings.log_tail_bytes
    forwarded = run.printed("")
    assert all(line == "x" * 1023 for line in forwarded)
    kept = sum(len(line) + 1 for line in forwarded)
    assert settings.log_keep_bytes - 1024 < kept <= settings.log_keep_bytes
    assert all(line.startswith("[udf test-task/1 stdout] ") for line in run.lines)


def test_an_invalid_response_mode_fails_the_invocation(settings: Settings) -> None:
    run = fixture_bundles.invoke(LIFECYCLE, settings, handler="bad-mode")

    error_type, message = _error(run)
    assert error_type == "Runtime.InvalidResponseModeHeader"
    assert "'buffered'" in message


def test_an_endless_stream_is_too_large_not_a_timeout(settings: Settings) -> None:
    small = settings.model_copy(update={"max_response_bytes": 64 * 1024})

    # If the size were only judged at the end of the stream, this would run into the deadline.
    run = fixture_bundles.invoke(LIFECYCLE, small, handler="endless-stream", timeout_ms=60_000)

    error_type, message = _error(run)
    assert error_type == "Function.ResponseSizeTooLarge"
    assert message.endswith("exceeded maximum allowed payload size (65536 bytes).")


def test_a_non_json_response_comes_back_base64(settings: Settings) -> None:
    run = fixture_bundles.invoke(LIFECYCLE, settings, handler="env")

    assert run.result.status == "succeeded"
    assert run.result.response is None
    assert run.result.response_base64 is not None
    assert b"AWS_LAMBDA_RUNTIME_API=" in base64.b64decode(run.result.response_base64)


def _kill(pid: int) -> None:
    """SIGKILL `pid` and wait until it has exited (it may have gone already)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        select.select([fd], [], [], SAFETY_S)
    finally:
        os.close(fd)


def test_a_writer_that_escaped_the_group_does_not_hold_the_runner(settings: Settings) -> None:
    # Without a containment sweep (none is passed here) the escaped writer outlives the group
    # kill and keeps the output pipe full; the runner must still return with the answer.
    run = fixture_bundles.invoke(LIFECYCLE, settings, handler="escape")
    try:
        assert run.result.status == "succeeded", run.result
        assert run.result.response == {}
    finally:
        # It dies of SIGPIPE at its next write now that the runner has closed the pipe; this
        # only makes sure of it.
        for pid in run.printed("ESCAPED "):
            _kill(int(pid))
