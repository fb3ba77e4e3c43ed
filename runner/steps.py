"""Independent steps of an attempt run at the same time, with one error reported as if in order.

The network steps before an invocation do not depend on each other: fetching the bundle (mint
read credentials, then GET), minting write credentials for the outputs, and each input query
need only the task's token. `run_together` starts them at once on a few threads and returns
their results in the order given, or raises one error chosen by a fixed precedence:

1. A step that fails with a non-retryable error cancels the others (`Cancellation`): they stop
   at their next checkpoint (before a request or a retry, between the chunks of a download,
   whose socket is also shut) and their outcome is discarded.
2. A retryable failure cancels nothing: the steps still running may yet find a non-retryable
   problem, and that is what tells the control plane not to retry.
3. Every step has ended before `run_together` returns (no thread, socket or file outlives it).
   The error raised is the first non-retryable one in the order of `steps`; if there is none,
   the first retryable one. An exception that is not a `RunnerError` (a bug) comes first.

So for the same outcomes of the steps the same error is reported: the one running them one
after another, in that order, would have reported, except that a later step's non-retryable
error wins over an earlier retryable one (a task that cannot succeed must not be retried). Each
step is bounded by the attempt's deadline on its own (every request's timeout is cut to what is
left of it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager

from runner.errors import RunnerError

__all__ = ["MAX_PARALLEL", "NEVER", "Cancellation", "CancelledError", "run_together"]

#: Most steps in flight at once: the bundle, the write credentials and two queries; more would
#: only compete for the same two services (and for this environment's share of a CPU).
MAX_PARALLEL = 4


class CancelledError(Exception):
    """The step stopped because another one failed for good; never reported as the error."""


class Cancellation:
    """Set once, when the other steps should stop. Steps check it, wait on it, and register
    how to abort what they are blocked in."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._aborts: list[Callable[[], None]] = []

    @property
    def is_set(self) -> bool:
        """Whether the steps were told to stop."""
        return self._event.is_set()

    def cancel(self) -> None:
        """Tell every step to stop, and abort what they registered."""
        with self._lock:
            self._event.set()
            aborts, self._aborts = self._aborts, []
        for abort in aborts:
            abort()

    def check(self) -> None:
        """Raise `CancelledError` if the steps were told to stop."""
        if self._event.is_set():
            raise CancelledError

    def sleep(self, seconds: float) -> None:
        """Pause `seconds` (a backoff), or raise `CancelledError` as soon as told to stop."""
        if self._event.wait(seconds):
            raise CancelledError

    @contextmanager
    def aborting(self, abort: Callable[[], None]) -> Iterator[None]:
        """Within the block, a cancellation calls `abort` (from the cancelling thread)."""
        with self._lock:
            if self._event.is_set():
                raise CancelledError
            self._aborts.append(abort)
        try:
            yield
        finally:
            with self._lock:
                if abort in self._aborts:
                    self._aborts.remove(abort)


#: What never cancels: a step run alone has nobody to stop.
NEVER = Cancellation()


def run_together[T](steps: Sequence[Callable[[Cancellation], T]]) -> list[T]:
    """Each step's result, in order, once all have ended; or the error the precedence above
    picks. One step runs in the calling thread, with no pool."""
    if len(steps) == 1:
        return [steps[0](NEVER)]
    values, failures = _run(steps)
    error = _first_error(failures)
    if error is None:
        return values
    try:
        raise error
    finally:
        # Neither this frame nor the discarded failures may stay referenced from the error's
        # traceback: a cancelled download's frames hold its socket until they are freed.
        del error, failures


def _run[T](steps: Sequence[Callable[[Cancellation], T]]
            ) -> tuple[list[T], list[BaseException | None]]:
    """The values of the steps that succeeded, and each step's failure (or None)."""
    cancellation = Cancellation()
    with ThreadPoolExecutor(max_workers=min(len(steps), MAX_PARALLEL),
                            thread_name_prefix="udf-step") as pool:
        futures = [pool.submit(step, cancellation) for step in steps]
        pending: set[Future[T]] = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            if any(_stops_the_others(future.exception()) for future in done):
                cancellation.cancel()
    failures = [future.exception() for future in futures]
    return [future.result() for future, failure in zip(futures, failures, strict=True)
            if failure is None], failures


def _stops_the_others(error: BaseException | None) -> bool:
    if error is None or isinstance(error, CancelledError):
        return False
    return not (isinstance(error, RunnerError) and error.is_retryable)


def _first_error(failures: Sequence[BaseException | None]) -> BaseException | None:
    errors = [e for e in failures if e is not None and not isinstance(e, CancelledError)]
    bugs = [e for e in errors if not isinstance(e, RunnerError)]
    final = [e for e in errors if isinstance(e, RunnerError) and not e.is_retryable]
    return next(iter(bugs or final or errors), None)
