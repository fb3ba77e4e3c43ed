"""Execution environments for `udf-runner serve`, kept as Lambda keeps them.

Lambda runs each invocation in an execution environment that serves one invocation at a time:
concurrent invocations get environments of their own, an idle one is reused (warm), and with
tenant isolation an environment only ever serves the tenant it was created for. Here an
environment is a Python process (multiprocessing's spawn: a fresh interpreter) that imports the
deployed handler once (its cold start) and then runs invocations one by one.

Each environment also gets a work root and, when the runner is root, a sandbox uid and gid of
its own: the sweep after an attempt removes every process and scratch file of its uid, and must
not reach the attempt running next to it, which in Lambda would be on another machine.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import traceback
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, TextIO

from devstack.local_run import LocalContext
from runner.settings import Settings

__all__ = ["Environment", "Environments", "Invoked", "Throttled"]

#: Seconds to wait for an environment's process to end after it is told to stop.
_STOP_SECONDS = 5.0
#: The end of the function's log returned for `LogType: Tail`, as Lambda returns it.
LOG_TAIL_BYTES = 4096


class Throttled(Exception):  # noqa: N818 - Lambda's word for it
    """Every environment is busy and no more may be started (Lambda's 429)."""


@dataclass(frozen=True)
class Invoked:
    """What one invocation returned: the handler's result, or Lambda's error body when the
    function itself failed (`function_error` is then `Unhandled`); and the end of its log."""

    body: Any
    function_error: str | None = None
    log_tail: str = ""


def _unhandled(error_type: str, message: str) -> Invoked:
    return Invoked({"errorType": error_type, "errorMessage": message, "stackTrace": []},
                   "Unhandled")


@dataclass
class Environment:
    """One execution environment: a process running the handler, one invocation at a time."""

    slot: int
    tenant: str | None
    process: BaseProcess
    conn: Connection
    init_failed: bool = False  # its cold start failed: it answered once and is gone

    def invoke(self, payload: Any, timeout_ms: int) -> Invoked:
        """Run the handler on `payload` with `timeout_ms` as the function's timeout."""
        request_id = str(uuid.uuid4())
        try:
            self.conn.send((payload, timeout_ms))
            if self.conn.poll(timeout_ms / 1000):
                kind, body, tail = self.conn.recv()
                self.init_failed = kind == "init-error"
                return Invoked(body, None if kind == "result" else "Unhandled", tail)
        except (EOFError, OSError):
            return self._exited(request_id)
        self.stop(kill=True)  # Lambda ends an environment whose function timed out
        return _unhandled("Sandbox.Timedout", f"RequestId: {request_id} Error: Task timed out "
                          f"after {timeout_ms / 1000:.2f} seconds")

    def _exited(self, request_id: str) -> Invoked:
        self.process.join(_STOP_SECONDS)
        code = self.process.exitcode
        reason = (f"signal: {signal.Signals(-code).name}" if code is not None and code < 0
                  else f"exit status {code}")
        return _unhandled("Runtime.ExitError",
                          f"RequestId: {request_id} Error: Runtime exited with error: {reason}")

    @property
    def alive(self) -> bool:
        """Whether it can take another invocation."""
        return not self.init_failed and self.process.is_alive()

    def stop(self, *, kill: bool = False) -> None:
        """End the process: at once with `kill`, else when it has read that the pipe closed."""
        if kill:
            self.process.kill()
        self.conn.close()
        self.process.join(_STOP_SECONDS)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class Environments:
    """The function's execution environments: reused when idle, at most `limit` at once."""

    def __init__(self, environ: Mapping[str, str], *, limit: int, work_base: Path) -> None:
        self._environ = dict(environ)
        self._limit = limit
        self._work_base = work_base
        self._idle: list[Environment] = []
        self._busy: dict[int, Environment | None] = {}  # None: being started
        self._lock = threading.Lock()
        self._context = multiprocessing.get_context("spawn")

    def acquire(self, tenant: str | None) -> Environment:
        """An idle environment of `tenant`, or a new one; `Throttled` when none may start."""
        with self._lock:
            for env in self._idle:
                if env.tenant == tenant:
                    self._idle.remove(env)
                    self._busy[env.slot] = env
                    return env
            evicted = self._idle.pop(0) if self._idle and self._full() else None
            if self._full() and evicted is None:
                raise Throttled(f"all {self._limit} execution environments are busy")
            slot = min(set(range(self._limit)) - set(self._busy) - {e.slot for e in self._idle})
            self._busy[slot] = None
        if evicted is not None:
            evicted.stop()
        env = self._start(slot, tenant)
        with self._lock:
            self._busy[slot] = env
        return env

    def release(self, env: Environment) -> None:
        """Give `env` back after an invocation (a dead one is dropped: its slot is free)."""
        with self._lock:
            self._busy.pop(env.slot, None)
            if env.alive:
                self._idle.append(env)

    def close(self) -> None:
        """Stop every environment; an invocation still running ends as Runtime.ExitError."""
        with self._lock:
            running = [env for env in self._busy.values() if env is not None]
            idle, self._idle = self._idle, []
        for env in running:
            env.stop(kill=True)
        for env in idle:
            env.stop()

    def _full(self) -> bool:
        return len(self._busy) + len(self._idle) >= self._limit

    def _start(self, slot: int, tenant: str | None) -> Environment:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(target=serve_invocations,
                                        args=(theirs, self._environ_of(slot)),
                                        name=f"udf-runner-env-{slot}", daemon=True)
        process.start()
        theirs.close()
        return Environment(slot, tenant, process, ours)

    def _environ_of(self, slot: int) -> dict[str, str]:
        defaults = Settings.model_fields
        uid = int(self._environ.get("UDF_RUNNER_SANDBOX_UID", defaults["sandbox_uid"].default))
        gid = int(self._environ.get("UDF_RUNNER_SANDBOX_GID", defaults["sandbox_gid"].default))
        return {**self._environ, "UDF_RUNNER_WORK_ROOT": str(self._work_base / f"env-{slot}"),
                "UDF_RUNNER_SANDBOX_UID": str(uid + slot),
                "UDF_RUNNER_SANDBOX_GID": str(gid + slot)}


class _TailingStream:
    """The function's stdout: passed on to the server's stderr, its end kept per invocation."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._tail: deque[str] = deque()
        self._size = 0

    def write(self, text: str) -> int:
        self._out.write(text)
        self._tail.append(text)
        self._size += len(text)
        while self._size - len(self._tail[0]) >= LOG_TAIL_BYTES:
            self._size -= len(self._tail.popleft())
        return len(text)

    def flush(self) -> None:
        self._out.flush()

    def take_tail(self) -> str:
        """The last LOG_TAIL_BYTES characters written since the previous call."""
        tail = "".join(self._tail)[-LOG_TAIL_BYTES:]
        self._tail.clear()
        self._size = 0
        return tail


def serve_invocations(conn: Connection, environ: Mapping[str, str]) -> None:
    """An environment's process: cold start, then one invocation per request until the pipe
    closes. The function's log (its stdout, in Lambda) goes to the server's stderr."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the server, which stops us
    os.dup2(2, 1)  # nothing the function runs may write into the server's own stdout
    stdout = _TailingStream(sys.stderr)
    # Before the handler is imported: its logger takes the stream it writes to at import.
    sys.stdout = stdout
    os.environ.update(environ)
    try:
        from runner.app import lambda_handler  # noqa: PLC0415 - after the environment is set
    except Exception as e:  # the init error is the answer, as in Lambda
        _answer_init_error(conn, e, stdout)
        return
    while True:
        try:
            payload, timeout_ms = conn.recv()
        except EOFError:
            return
        try:
            reply = ("result", lambda_handler(payload, LocalContext(timeout_ms=timeout_ms)))
        except Exception as e:  # an unhandled error, reported as Lambda does
            reply = ("error", _error_body(e))
        conn.send((*reply, stdout.take_tail()))


def _answer_init_error(conn: Connection, error: Exception, stdout: _TailingStream) -> None:
    """Lambda answers the first invocation of an environment whose init failed with the
    error, and starts a new environment for the next."""
    try:
        conn.recv()
    except EOFError:
        return
    conn.send(("init-error", _error_body(error), stdout.take_tail()))


def _error_body(error: Exception) -> dict[str, Any]:
    return {"errorType": type(error).__name__, "errorMessage": str(error),
            "stackTrace": traceback.format_tb(error.__traceback__)}
