"""Steps run together: all at once, results in order, one error by a fixed precedence, a
non-retryable failure cancelling the rest, and no thread left behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from runner.errors import (
    AccessDeniedError,
    BundleNotFoundError,
    CredentialsUnavailableError,
    QueryFailedError,
    StorageUnavailableError,
)
from runner.steps import MAX_PARALLEL, Cancellation, CancelledError, run_together

Step = Callable[[Cancellation], object]
#: Longest wait for a step that should have been woken: a bug fails the test, never hangs it.
WAIT = 10.0


@pytest.fixture(autouse=True)
def _no_thread_left() -> Iterator[None]:
    before = threading.active_count()
    yield
    assert threading.active_count() == before


def test_steps_run_at_the_same_time_and_results_keep_their_order() -> None:
    all_in = threading.Barrier(3, timeout=WAIT)  # breaks unless all three are running at once

    def step(value: int) -> Step:
        def run(cancel: Cancellation) -> int:
            all_in.wait()
            return value
        return run

    assert run_together([step(1), step(2), step(3)]) == [1, 2, 3]


def test_no_more_than_max_parallel_threads_run_the_steps() -> None:
    threads = run_together([lambda cancel: threading.current_thread().name]
                           * (MAX_PARALLEL + 3))
    assert 1 <= len(set(threads)) <= MAX_PARALLEL


def test_one_step_runs_in_the_calling_thread() -> None:
    caller = threading.current_thread()
    assert run_together([lambda cancel: threading.current_thread()]) == [caller]


def test_the_first_non_retryable_error_in_step_order_wins_whatever_failed_first() -> None:
    later_failed = threading.Event()

    def first(cancel: Cancellation) -> None:
        assert later_failed.wait(WAIT)
        raise BundleNotFoundError("no bundle")

    def second(cancel: Cancellation) -> None:
        try:
            raise AccessDeniedError("no write access")
        finally:
            later_failed.set()

    with pytest.raises(BundleNotFoundError):
        run_together([first, second])


def test_a_non_retryable_error_wins_over_an_earlier_retryable_one() -> None:
    def unavailable(cancel: Cancellation) -> None:
        raise StorageUnavailableError("S3 kept failing")

    def refused(cancel: Cancellation) -> None:
        raise QueryFailedError("syntax error", retryable=False)

    with pytest.raises(QueryFailedError) as raised:
        run_together([unavailable, refused])
    assert not raised.value.is_retryable


def test_retryable_errors_alone_report_the_first_in_order() -> None:
    def minter_down(cancel: Cancellation) -> None:
        raise CredentialsUnavailableError("minter down")

    def query_down(cancel: Cancellation) -> None:
        raise QueryFailedError("service down", retryable=True)

    with pytest.raises(CredentialsUnavailableError):
        run_together([minter_down, query_down])


def test_a_non_retryable_failure_cancels_and_aborts_the_others() -> None:
    aborted = threading.Event()

    def blocked(cancel: Cancellation) -> None:
        with cancel.aborting(aborted.set):
            assert aborted.wait(WAIT)  # stands for a read that the abort interrupts
        cancel.check()

    def backing_off(cancel: Cancellation) -> None:
        cancel.sleep(WAIT)

    def refused(cancel: Cancellation) -> None:
        raise AccessDeniedError("refused")

    started = time.monotonic()
    with pytest.raises(AccessDeniedError):
        run_together([blocked, backing_off, refused])
    assert time.monotonic() - started < WAIT / 2


def test_a_retryable_failure_lets_the_others_finish() -> None:
    failed = threading.Event()
    seen: list[bool] = []

    def down(cancel: Cancellation) -> None:
        try:
            raise StorageUnavailableError("down")
        finally:
            failed.set()

    def finishing(cancel: Cancellation) -> str:
        assert failed.wait(WAIT)
        seen.append(cancel.is_set)
        return "done"

    with pytest.raises(StorageUnavailableError):
        run_together([down, finishing])
    assert seen == [False]


def test_a_bug_comes_before_any_task_error() -> None:
    def refused(cancel: Cancellation) -> None:
        raise AccessDeniedError("refused")

    def bug(cancel: Cancellation) -> None:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        run_together([refused, bug])


def test_a_cancelled_step_is_never_the_error() -> None:
    def cancelled_first(cancel: Cancellation) -> None:
        cancel.sleep(WAIT)

    def refused(cancel: Cancellation) -> None:
        raise AccessDeniedError("refused")

    with pytest.raises(AccessDeniedError):
        run_together([cancelled_first, refused])


def test_aborting_after_a_cancellation_stops_at_once() -> None:
    cancellation = Cancellation()
    cancellation.cancel()
    with pytest.raises(CancelledError), cancellation.aborting(lambda: None):
        pytest.fail("the block must not run")
