"""The author's loop (issue 15, item 4): `udf-runner invoke --watch` runs again on each change of
the bundle and stops cleanly; a person gets a summary, a script gets `--json`.

Everything runs the real console command as a child process; the tests wait on what it prints,
never on a clock.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from devstack.bundles import zip_folder
from devstack.stack import LocalStack

REPO = Path(__file__).resolve().parents[3]
UDF_RUNNER = REPO / ".venv" / "bin" / "udf-runner"

# A custom runtime that prints on both streams and answers with the number in its `version`
# file, so that a run shows which version of the bundle it ran.
BOOTSTRAP = """#!/bin/bash
set -euo pipefail
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
curl -sS -D "$TMPDIR/h" -o "$TMPDIR/event" "$API/invocation/next"
id=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$TMPDIR/h" | tr -d '[:space:]' | cut -d: -f2)
echo "hello from version $(cat version)"
echo "a line on stderr" >&2
curl -sS -o /dev/null "$API/invocation/$id/response" -d "{\\"version\\": $(cat version)}"
curl -sS -o /dev/null "$API/invocation/next" || true
"""


def versioned_bundle(folder: Path, version: int) -> Path:
    """A bundle folder answering `{"version": version}`."""
    folder.mkdir(exist_ok=True)
    bootstrap = folder / "bootstrap"
    bootstrap.write_text(BOOTSTRAP)
    bootstrap.chmod(0o755)
    (folder / "version").write_text(f"{version}\n")
    return folder


def environ(work_root: Path, stack: LocalStack | None = None, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("UDF_RUNNER_", "UDF_DEVSTACK_"))}
    env["UDF_RUNNER_WORK_ROOT"] = str(work_root)
    env.pop("NO_COLOR", None)
    if stack is not None:
        env |= stack.access.to_environ()
    return env | extra


class Watching:
    """A running `udf-runner invoke --watch`, read line by line (stderr merged into stdout)."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [str(UDF_RUNNER), "invoke", "--watch", *args], env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.process.stdout is not None
        self._out: IO[str] = self.process.stdout
        self.seen: list[str] = []

    def until(self, text: str) -> list[str]:
        """The lines printed up to the first one holding `text` (which it waits for)."""
        lines = []
        for line in self._out:
            lines.append(line)
            self.seen.append(line)
            if text in line:
                return lines
        raise AssertionError(f"ended before printing {text!r}:\n{''.join(self.seen)}")

    def descendants(self) -> set[int]:
        """Every process below it now: its own stack's S3 server, the bundle and its children."""
        found: set[int] = set()
        pending = [self.process.pid]
        while pending:
            for task in Path(f"/proc/{pending.pop()}/task").iterdir():
                with contextlib.suppress(FileNotFoundError):  # a thread that just ended
                    children = {int(pid) for pid in (task / "children").read_text().split()}
                    pending += children - found
                    found |= children
        return found

    def close(self) -> None:
        """Close the pipe it printed on."""
        self._out.close()

    def stop(self, signum: int) -> tuple[int, str]:
        """Send `signum`; its exit status and the rest of what it printed."""
        self.process.send_signal(signum)
        rest = self._out.read()
        return self.process.wait(timeout=60), rest


@pytest.fixture
def watching() -> Iterator[list[Watching]]:
    started: list[Watching] = []
    yield started
    for watch in started:
        if watch.process.poll() is None:
            watch.process.kill()
        watch.process.wait()
        watch.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_watch_runs_again_on_a_change_and_stops_cleanly(tmp_path: Path, work_root: Path,
                                                        watching: list[Watching],
                                                        signum: int) -> None:
    bundle = versioned_bundle(tmp_path / "fn", 1)
    # Its own stack, in process: stopping must take the stack's server down with it.
    watch = Watching(str(bundle), env=environ(work_root))
    watching.append(watch)

    first = watch.until("watching")
    stack_processes = watch.descendants()
    (bundle / "version").write_text("2\n")
    second = watch.until("watching")
    status, rest = watch.stop(signum)

    assert 'response: {"version": 1}' in "".join(first)
    assert "version changed; running again" in "".join(second)
    assert 'response: {"version": 2}' in "".join(second)
    assert "hello from version 2" in "".join(second)
    assert status == 0, rest
    assert "stopped watching" in rest
    assert "Traceback" not in "".join(watch.seen) + rest
    assert stack_processes
    assert not [pid for pid in stack_processes if _alive(pid)]


# Answers nothing: it waits on a child of its own until it is stopped.
STUCK_BOOTSTRAP = """#!/bin/bash
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
curl -sS -o /dev/null "$API/invocation/next"
echo "waiting on a child"
sleep 3600 &
wait
"""


def test_watch_stopped_mid_run_leaves_nothing_behind(tmp_path: Path, work_root: Path,
                                                     watching: list[Watching]) -> None:
    bundle = tmp_path / "stuck"
    bundle.mkdir()
    (bundle / "bootstrap").write_text(STUCK_BOOTSTRAP)
    (bundle / "bootstrap").chmod(0o755)
    watch = Watching(str(bundle), env=environ(work_root))
    watching.append(watch)

    watch.until("waiting on a child")
    running = watch.descendants()
    status, rest = watch.stop(signal.SIGTERM)

    assert status == 0, rest
    assert rest.splitlines() == ["udf-runner: stopped watching"]  # no traceback, no warning
    assert len(running) >= 3  # the S3 server, the bootstrap and its sleep at least
    assert not [pid for pid in running if _alive(pid)]
    assert not list((work_root / "attempts").iterdir())


def test_watch_follows_a_zip_replaced_by_a_rename(tmp_path: Path, work_root: Path,
                                                  local_stack: LocalStack,
                                                  watching: list[Watching]) -> None:
    zip_path = tmp_path / "fn.zip"
    zip_path.write_bytes(zip_folder(versioned_bundle(tmp_path / "v1", 1)))
    watch = Watching(str(zip_path), "--json", env=environ(work_root, local_stack))
    watching.append(watch)

    first = watch.until("watching")
    staged = tmp_path / "fn.zip.partial"
    staged.write_bytes(zip_folder(versioned_bundle(tmp_path / "v2", 2)))
    (tmp_path / "unrelated.txt").write_text("not the bundle")
    staged.replace(zip_path)  # as build tools write a zip: a new file renamed over the old one
    second = watch.until("watching")
    status, _ = watch.stop(signal.SIGTERM)

    results = [json.loads(line) for line in first + second if line.startswith("{")]
    assert [result["response"] for result in results] == [{"version": 1}, {"version": 2}]
    assert status == 0


def test_a_person_gets_a_summary_and_the_output_live(tmp_path: Path, work_root: Path,
                                                     local_stack: LocalStack) -> None:
    bundle = versioned_bundle(tmp_path / "fn", 7)

    done = subprocess.run([str(UDF_RUNNER), "invoke", str(bundle)], capture_output=True,
                          text=True, env=environ(work_root, local_stack), check=False)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("succeeded in ")
    assert "ms wall" in lines[0]
    assert "invoke" in lines[0]
    assert 'response: {"version": 7}' in lines
    assert "  | hello from version 7" in lines
    assert "  | a line on stderr" in lines
    assert "\x1b[" not in done.stdout  # not a terminal: no colour
    # The bundle's own lines went by on stderr as it ran, labelled with their stream.
    assert "stdout] hello from version 7" in done.stderr
    assert "stderr] a line on stderr" in done.stderr


def test_a_failure_summary_names_the_error(work_root: Path, local_stack: LocalStack) -> None:
    done = subprocess.run([str(UDF_RUNNER), "invoke", str(REPO / "tests/fixtures/bash/pipeline"),
                           "--handler", "error"], capture_output=True, text=True,
                          env=environ(work_root, local_stack), check=False)

    assert done.returncode == 1
    assert done.stdout.startswith("failed in ")
    assert "error: Function.Error (not retryable): " in done.stdout
    assert "no whale today" in done.stdout


def test_json_is_the_result_alone(tmp_path: Path, work_root: Path,
                                  local_stack: LocalStack) -> None:
    bundle = versioned_bundle(tmp_path / "fn", 3)

    done = subprocess.run([str(UDF_RUNNER), "invoke", str(bundle), "--json"],
                          capture_output=True, text=True,
                          env=environ(work_root, local_stack), check=False)

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded"
    assert result["response"] == {"version": 3}
    assert done.stdout.count("\n") == 1


def _on_a_terminal(args: list[str], env: dict[str, str]) -> str:
    """What the command prints on standard output when that is a terminal."""
    main, terminal = pty.openpty()
    with subprocess.Popen(args, env=env, stdout=terminal, stderr=subprocess.DEVNULL) as child:
        os.close(terminal)
        printed = bytearray()
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the terminal's last writer is gone
                break
            if not chunk:
                break
            printed += chunk
        child.wait()
    os.close(main)
    return printed.decode()


def test_colour_only_on_a_terminal_and_never_with_no_color(tmp_path: Path, work_root: Path,
                                                           local_stack: LocalStack) -> None:
    folder = versioned_bundle(tmp_path / "fn", 1)
    args = [str(UDF_RUNNER), "invoke", str(folder)]
    env = environ(work_root, local_stack)

    coloured = _on_a_terminal(args, env)
    plain = _on_a_terminal(args, env | {"NO_COLOR": "1"})

    assert "\x1b[1;32msucceeded\x1b[0m" in coloured
    assert "succeeded in" in plain
    assert "\x1b[" not in plain
