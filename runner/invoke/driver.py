"""One invocation: serve the Runtime API, start the child, wait for its answer, tear it down.

The driver is a single poll loop over the child's output pipes (stdout, stderr and, for a
managed runtime, Lambda's telemetry log frames), a pidfd that becomes readable when the child
exits, and a pipe the Runtime API server writes to when the invocation's state changes. It
waits for the first of: an answer, the child's exit, or the deadline. After an answer it keeps
reading until the runtime is back in `next`, has exited or closed its pipes, for at most
`log_flush_grace_ms`: what a runtime writes as it finishes is not lost. No thread sleeps and
nothing is polled on a timer.
"""

from __future__ import annotations

import array
import fcntl
import math
import os
import select
import signal
import termios
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, replace

from runner.errors import (
    ExitError,
    FunctionError,
    InitError,
    InvalidResponseModeError,
    InvocationError,
    ResponseTooLargeError,
    TimedOutError,
)
from runner.invoke.child import Child, ChildSpec
from runner.invoke.output import LineSink, OutputCapture, stdout_sink
from runner.models import LogsInfo
from runner.runtime_api import (
    Answer,
    InvalidResponseMode,
    Invocation,
    InvocationState,
    LateAnswer,
    Oversized,
    PostedError,
    Response,
    RuntimeApiServer,
)
from runner.settings import Settings

__all__ = ["InvocationOutcome", "InvocationSpec", "drain", "judge", "run_invocation"]

_READ_CHUNK = 64 * 1024
#: Longest wait, after the child exits, for requests it sent just before exiting.
_SETTLE_SECONDS = 1.0
#: Linux's default ceiling for a pipe's size (/proc/sys/fs/pipe-max-size) for a process
#: without CAP_SYS_RESOURCE, as the runner is in Lambda.
_PIPE_MAX = 1024 * 1024


@dataclass(frozen=True)
class InvocationSpec:
    """Everything one invocation needs besides the settings."""

    child: ChildSpec  # its env lacks AWS_LAMBDA_RUNTIME_API, which only the driver knows
    event: bytes
    timeout_ms: int
    function_arn: str
    label: str  # "<task>/<attempt>", prefixed to every forwarded output line
    trace_id: str | None = None
    client_context: str | None = None
    cognito_identity: str | None = None


@dataclass(frozen=True)
class InvocationOutcome:
    """How the invocation ended: a response, or the error that stands for it."""

    request_id: str
    deadline_ms: int
    response: Response | None
    error: InvocationError | None
    timings_ms: dict[str, int]
    logs: LogsInfo


def run_invocation(spec: InvocationSpec, settings: Settings, *, sink: LineSink = stdout_sink,
                   sweep: Callable[[], None] | None = None) -> InvocationOutcome:
    """Run the child for exactly one invocation. `sweep` runs after the child's group is gone,
    to take whatever escaped it (see `runner.containment`)."""
    timeout = spec.timeout_ms / 1000
    request_id = str(uuid.uuid4())
    started = time.monotonic()
    deadline_ms = int(time.time() * 1000) + spec.timeout_ms
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    state = InvocationState(
        Invocation(request_id, spec.event, deadline_ms, spec.function_arn, spec.trace_id,
                   spec.client_context, spec.cognito_identity),
        deadline=started + timeout, on_change=lambda: _wake(wake_w),
    )
    capture = OutputCapture(label=spec.label, keep_bytes=settings.log_keep_bytes,
                            tail_bytes=settings.log_tail_bytes,
                            line_bytes=settings.log_line_bytes, sink=sink)
    server = RuntimeApiServer(state, response_limit=settings.max_response_bytes,
                              peer_uid=_peer_uid(spec.child))
    server.start()
    child: Child | None = None
    try:
        env = {**spec.child.env, "AWS_LAMBDA_RUNTIME_API": server.address}
        try:
            child = Child(replace(spec.child, env=env))
        except OSError as e:
            failed = ExitError(f"RequestId: {request_id} Error: Runtime failed to start: "
                               f"{e.strerror}")
            return _outcome(state, capture, response=None, error=failed, started=started)
        _widen(child.streams, settings.log_keep_bytes)
        waited = _Waiter(child, wake_r, capture)
        waited.until(lambda: state.published or waited.exited, started + timeout)
        if waited.exited and not state.published:
            # It may have exited right after sending its answer: let the server finish reading.
            server.settle(min(_SETTLE_SECONDS, max(0.0, started + timeout - time.monotonic())))
        answer = state.close()
        ended = time.monotonic()
        if state.published and not waited.exited:
            _flush(waited, state, capture, settings.log_flush_grace_ms / 1000)
        child.stop(settings.term_grace_ms / 1000)
        if sweep is not None:
            sweep()
        drain(waited.open_streams, capture)
        response, error = judge(answer, exited=waited.exited, returncode=child.returncode,
                                 request_id=request_id, timeout=timeout)
        return _outcome(state, capture, response=response, error=error, started=started,
                        ended=ended)
    finally:
        server.stop()
        if child is not None:
            child.close()
        os.close(wake_r)
        os.close(wake_w)


def _peer_uid(child: ChildSpec) -> int | None:
    """The uid whose connections the Runtime API serves: the confined child's
    (runner.runtime_api.peers)."""
    confined = child.confinement
    if not confined.confined:
        return None
    return confined.user if confined.user is not None else os.getuid()


def _wake(fd: int) -> None:
    with suppress(BlockingIOError):  # already full of wake-ups; one is enough
        os.write(fd, b"!")


class _Waiter:
    """The poll loop over the child's pipes, its pidfd and the server's wake-up pipe."""

    def __init__(self, child: Child, wake_r: int, capture: OutputCapture) -> None:
        self.exited = False
        self.open_streams = dict(child.streams)
        self._pidfd = child.pidfd
        self._wake_r = wake_r
        self._capture = capture
        self._poller = select.poll()
        for fd in (*child.streams, child.pidfd, wake_r):
            self._poller.register(fd, select.POLLIN)

    def until(self, done: Callable[[], bool], deadline: float) -> bool:
        """Move output into the capture until `done()` (True) or the deadline (False)."""
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            for fd, _ in self._poller.poll(math.ceil(remaining * 1000)):
                if fd in self.open_streams:
                    if not _read_into(fd, self.open_streams, self._capture):
                        self._poller.unregister(fd)
                elif fd == self._pidfd:
                    self.exited = True
                    self._poller.unregister(fd)
                else:
                    os.read(self._wake_r, 4096)
        return True


def _widen(streams: dict[int, str], size: int) -> None:
    """Let each pipe hold `size` bytes (up to the system's maximum): a runtime that writes
    asynchronously (Node's process.stdout) queues output in itself only once the pipe is full,
    and what is still queued when it stops is never written. With room for the whole keep
    limit, that can only happen to output already over the limit, which is reported
    truncated."""
    wanted = min(size, _PIPE_MAX)
    for fd in streams:
        with suppress(OSError):  # over the system's or the user's limit: keep the default
            if wanted > fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ):
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, wanted)


def _flush(waited: _Waiter, state: InvocationState, capture: OutputCapture,
           grace: float) -> None:
    """After the answer, keep reading until the runtime has written all it had to: it is back
    in `next` (what it wrote before asking is in the pipe, for `drain`), it has exited, or its
    pipes are closed. A bootstrap that flushes its buffers at exit does so after posting the
    answer, and stopping it at once would lose that output. Bounded by `grace`, so a runtime
    that answered and stays busy does not hold the runner; if it was still writing when the
    grace ran out, the logs say they are truncated."""
    before = capture.total
    done = waited.until(lambda: state.back_in_next or waited.exited or not waited.open_streams,
                        time.monotonic() + grace)
    if not done and capture.total > before:
        capture.cut_short()


def _read_into(fd: int, streams: dict[int, str], capture: OutputCapture) -> bool:
    """Move one chunk from a pipe into the capture; False (and forget it) at end of file."""
    data = os.read(fd, _READ_CHUNK)
    if not data:
        del streams[fd]
        return False
    capture.feed(streams[fd], data)
    return True


def drain(streams: dict[int, str], capture: OutputCapture) -> None:
    """Read what the child left in its pipes: exactly what they hold now. A writer that
    outlived the sweep may keep writing; what it adds is neither waited for nor read, so it
    cannot keep the runner here (reading "until empty" could go on for as long as it writes)."""
    for fd, stream in streams.items():
        left = _buffered(fd)
        while left > 0:
            data = os.read(fd, min(left, _READ_CHUNK))  # never blocks: the bytes are there
            if not data:
                break
            capture.feed(stream, data)
            left -= len(data)


def _buffered(fd: int) -> int:
    """Bytes waiting in the pipe `fd`."""
    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count)
    return count[0]


def judge(  # noqa: PLR0911 - one return per way an invocation ends reads as a table
        answer: Answer | None, *, exited: bool, returncode: int | None, request_id: str,
        timeout: float) -> tuple[Response | None, InvocationError | None]:
    """Turn what happened into a response or the error the result reports
    (docs/runtime-api.md#outcomes)."""
    prefix = f"RequestId: {request_id} Error: "
    match answer:
        case Response():
            return answer, None
        case PostedError(phase="init", error=error):
            return None, InitError(f"{error.error_type}: {error.error_message}",
                                   function_error=error)
        case PostedError(error=error):
            return None, FunctionError(f"{error.error_type}: {error.error_message}",
                                       function_error=error)
        case Oversized(size=size, limit=limit):
            return None, ResponseTooLargeError(
                f"Response payload size ({size} bytes) exceeded maximum allowed payload size "
                f"({limit} bytes).")
        case InvalidResponseMode(mode=mode):
            return None, InvalidResponseModeError(
                f"{prefix}Invalid response mode header value: {mode!r}")
        case LateAnswer():
            return None, TimedOutError(f"{prefix}Task timed out after {timeout:.2f} seconds")
        case None if not exited:
            return None, TimedOutError(f"{prefix}Task timed out after {timeout:.2f} seconds")
    return None, ExitError(prefix + _exit_reason(returncode))


def _exit_reason(returncode: int | None) -> str:
    if returncode is None or returncode == 0:
        return "Runtime exited without providing a reason"
    if returncode < 0:
        # Lambda prints Go's wording ("signal: killed"); the name is added for the reader.
        sig = signal.Signals(-returncode)
        return (f"Runtime exited with error: signal: {(signal.strsignal(sig) or '').lower()} "
                f"({sig.name})")
    return f"Runtime exited with error: exit status {returncode}"


def _outcome(state: InvocationState, capture: OutputCapture, *, response: Response | None,
             error: InvocationError | None, started: float,
             ended: float | None = None) -> InvocationOutcome:
    end = ended if ended is not None else time.monotonic()
    took_next = state.next_at
    answered = state.answered_at if state.answered_at is not None else end
    timings = {"init": _ms((took_next or answered) - started)}
    if took_next is not None:
        timings["invoke"] = _ms(answered - took_next)
    invocation = state.invocation
    return InvocationOutcome(invocation.request_id, invocation.deadline_ms, response, error,
                             timings, capture.close())


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))
