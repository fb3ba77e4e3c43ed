"""One task attempt, from payload to result: the function's whole job, step by step.

    payload → token ┬ bundle (cache, or mint read credentials → fetch, verify) ┬ extract
                    ├ mint write credentials (outputs)                          ├ entrypoint
                    └ input queries, each on its own                            ┘ invocation
                                                                   (Runtime API + child)
                                                                   → cleanup → result

The steps between the token and the extraction need only the token, not each other, so they run
at the same time (`runner.steps`: bounded, each within the attempt's deadline, a non-retryable
failure cancelling the others, one error reported by a fixed precedence: the bundle's, then the
write credentials', then the queries' in the payload's order).

Every task-level problem becomes a failed result; nothing here raises for one. The steps live in
their own modules; this one only sequences them, times them and maps what they raise.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import urllib3
from pydantic import ValidationError

from runner import result, runtimes
from runner.bundle import extract
from runner.bundle.cache import BundleCache
from runner.bundle.fetch import FetchedBundle, fetch
from runner.containment import Containment
from runner.deadline import Deadline
from runner.errors import InvalidPayloadError, QueryFailedError, RunnerError, SandboxError
from runner.invoke.driver import InvocationOutcome, InvocationSpec, run_invocation
from runner.invoke.output import LineSink, stdout_sink
from runner.models import BundleInfo, TaskPayload, TaskResult
from runner.observability import Phases, logger, record_result
from runner.platform import S3Reader, ServiceClient, capability
from runner.platform.minter import MinterClient, ScopedCredentials
from runner.platform.query import INPUTS_KEY, TRUNCATED_MESSAGE, QueryClient
from runner.runtime_api.state import Response
from runner.settings import LAMBDA_RESPONSE_LIMIT, Settings
from runner.steps import MAX_PARALLEL, Cancellation, run_together

__all__ = [
    "CLEANUP_MARGIN_MS",
    "LOCAL_SETUP_BUDGET_MS",
    "InvokeContext",
    "Pipeline",
    "parse_payload",
]

#: Time kept back from the runner's own Lambda deadline for stopping the child and cleaning up.
CLEANUP_MARGIN_MS = 3_000
#: Budget for the steps before the invocation when no Lambda deadline is known (local runs).
LOCAL_SETUP_BUDGET_MS = 120_000


@dataclass
class _Attempt:
    """What is known about the attempt so far, for the result whatever happens."""

    phases: Phases = field(default_factory=Phases)
    task_id: str | None = None
    attempt: int | None = None
    bundle: BundleInfo | None = None
    outcome: InvocationOutcome | None = None


@dataclass
class _Prepared:
    """What the steps before the extraction produced (each step sets its own field)."""

    zip_path: Path | None = None
    credentials: ScopedCredentials | None = None
    results: dict[str, Any] = field(default_factory=dict)

    def bundle(self) -> Path:
        """The verified zip (set whenever the steps succeeded)."""
        if self.zip_path is None:
            raise SandboxError("internal error: the bundle step ended without a bundle")
        return self.zip_path


@dataclass(frozen=True)
class InvokeContext:
    """What the pipeline needs from the Lambda invocation that carries the task."""

    remaining_ms: Callable[[], int] | None = None  # the runner's own time left, when in Lambda
    trace_id: str | None = None


class Pipeline:
    """Runs task attempts with one configuration; lives as long as the execution environment."""

    def __init__(self, settings: Settings, *, sink: LineSink = stdout_sink) -> None:
        self._settings = settings
        self._sink = sink
        # One pool for the minter, the Query Service and S3: their connections are kept for
        # the next task (the credentials are each request's, not the connection's).
        self._pool = urllib3.PoolManager(retries=False, maxsize=MAX_PARALLEL)
        self._s3 = S3Reader(region=settings.region, endpoint_url=settings.s3_endpoint_url,
                            max_attempts=settings.s3_max_attempts, pool=self._pool)
        self._cache = BundleCache(settings.work_root / "cache", settings.cache_max_bytes)
        self._containment = Containment.start(settings, keep=[self._cache.root])
        logger.info("containment", extra=self._containment.log_fields())
        if self._containment.problem:
            logger.error("bundles will not run here", extra={"reason": self._containment.problem})

    def run(self, raw: Any, context: InvokeContext | None = None) -> TaskResult:
        """Run one attempt of the task `raw` and return its result; never raises for the task."""
        context = context or InvokeContext()
        attempt = _Attempt()
        error: RunnerError | None
        try:
            payload = parse_payload(raw, attempt)
            logger.append_keys(task_id=payload.task_id, attempt=payload.attempt,
                               bundle_sha256=payload.bundle.sha256)
            response = self._run(payload, context, attempt)
            error = attempt.outcome.error if attempt.outcome else None
        except RunnerError as e:
            response, error = None, e
        except Exception:  # a bug, not a task problem: still a result, never a stack to the caller
            logger.exception("internal error")
            response, error = None, SandboxError("internal error in the runner (see its logs)")
        try:
            return self._finish(attempt, response, error)
        finally:
            # The handler clears them per invocation too; this covers callers without it.
            logger.remove_keys(["task_id", "attempt", "bundle_sha256"])

    def _run(self, payload: TaskPayload, context: InvokeContext,
             attempt: _Attempt) -> Response | None:
        phases = attempt.phases
        if payload.timeout_ms > self._settings.max_timeout_ms:
            raise InvalidPayloadError(f"timeout_ms: {payload.timeout_ms} is over this runner's "
                                      f"maximum of {self._settings.max_timeout_ms}")
        capability.check(payload)
        deadline = self._deadline(payload, context)
        token = payload.capability_token.get_secret_value()
        event = _event_object(payload)
        self._containment.get_ready()
        with ExitStack() as cleanup:
            prepared = self._prepare(payload, token, deadline, attempt, cleanup)
            if payload.inputs.queries:
                event = {**event, INPUTS_KEY: {"queries": {
                    name: prepared.results[name] for name in payload.inputs.queries}}}
            task = runtimes.TaskEnvironment(
                task_id=payload.task_id, attempt=payload.attempt, token=token,
                query_url=self._settings.query_url, credentials_url=self._settings.minter_url,
                output_prefix=payload.outputs.s3_prefix if payload.outputs else "",
                credentials=prepared.credentials, user_env=payload.env,
                s3_endpoint_url=self._settings.s3_endpoint_url or None,
            )
            attempt.outcome = self._invoke(payload, prepared.bundle(), task=task,
                                           event=_event_bytes(event), deadline=deadline,
                                           context=context, phases=phases)
        return attempt.outcome.response

    def _deadline(self, payload: TaskPayload, context: InvokeContext) -> Deadline:
        if context.remaining_ms is None:
            return Deadline.after((payload.timeout_ms + LOCAL_SETUP_BUDGET_MS) / 1000)
        return Deadline.after(max(0, context.remaining_ms() - CLEANUP_MARGIN_MS) / 1000)

    def _prepare(self, payload: TaskPayload, token: str, deadline: Deadline, attempt: _Attempt,
                 cleanup: ExitStack) -> _Prepared:
        """The verified zip, the write credentials (with outputs) and the input query results
        (with queries), their steps run together."""
        phases, prepared = attempt.phases, _Prepared()
        minter = MinterClient(ServiceClient(self._settings.minter_url, token, pool=self._pool))

        def bundle(cancel: Cancellation) -> None:
            prepared.zip_path = self._bundle(payload, minter, deadline, attempt=attempt,
                                             cleanup=cleanup, cancel=cancel)

        def write(prefix: str) -> Callable[[Cancellation], None]:
            def run(cancel: Cancellation) -> None:
                with phases("credentials"):
                    prepared.credentials = minter.mint("write", [prefix], deadline, cancel)
            return run

        client = QueryClient(ServiceClient(self._settings.query_url, token, pool=self._pool),
                             max_rows=self._settings.query_max_rows)

        def query(name: str, sql: str) -> Callable[[Cancellation], None]:
            def run(cancel: Cancellation) -> None:
                with phases("queries"):
                    answer = client.run(name, sql, deadline, cancel)
                if answer["truncated"]:
                    logger.warning(TRUNCATED_MESSAGE, extra={"query": name,
                                                             "rows": len(answer["rows"])})
                prepared.results[name] = answer
            return run

        run_together([bundle,
                      *([write(payload.outputs.s3_prefix)] if payload.outputs else []),
                      *(query(name, sql) for name, sql in payload.inputs.queries.items())])
        return prepared

    def _bundle(self, payload: TaskPayload, minter: MinterClient, deadline: Deadline, *,
                attempt: _Attempt, cleanup: ExitStack, cancel: Cancellation) -> Path:
        """The verified zip: from the cache (re-hashed) or fetched with minted credentials."""
        sha256 = payload.bundle.sha256
        with attempt.phases("verify"):
            found = self._cache.lookup(sha256)
        if found.poisoned:
            logger.warning("cached bundle no longer matched its hash; discarded")
        if found.path is not None:
            attempt.bundle = BundleInfo(sha256=sha256, bytes=found.path.stat().st_size,
                                        cache_hit=True)
            return found.path
        with attempt.phases("credentials"):
            credentials = minter.mint("read", [payload.bundle.uri], deadline, cancel)
        with attempt.phases("fetch"):
            fetched = fetch(payload.bundle.uri, sha256, s3=self._s3, credentials=credentials,
                            dest_dir=self._settings.work_root / "downloads",
                            max_bytes=self._settings.max_bundle_bytes, deadline=deadline,
                            cancellation=cancel)
        attempt.bundle = BundleInfo(sha256=sha256, bytes=fetched.size, cache_hit=False)
        return self._keep(fetched, cleanup)

    def _keep(self, fetched: FetchedBundle, cleanup: ExitStack) -> Path:
        cached = self._cache.store(fetched)
        path = self._cache.path_of(fetched, cached=cached)
        if not cached:
            cleanup.callback(path.unlink, missing_ok=True)
        return path

    def _invoke(self, payload: TaskPayload, zip_path: Path, *, task: runtimes.TaskEnvironment,
                event: bytes, deadline: Deadline, context: InvokeContext,
                phases: Phases) -> InvocationOutcome:
        label = f"{payload.task_id}/{payload.attempt}"
        # Leaving the block kills and reaps every process the attempt left and removes its work
        # dir and scratch files; it raises SandboxError if it could not (even after a success).
        with self._containment.attempt(label) as contained:
            dirs = contained.dirs
            with phases("extract"):
                extract.extract(zip_path, dirs.task_root, extract.limits_from(self._settings))
            spec = runtimes.child_spec(payload.bundle.runtime, dirs, payload.bundle.handler, task,
                                     self._settings)
            timeout_ms = max(1, min(payload.timeout_ms, int(deadline.remaining() * 1000)))
            started = time.perf_counter()
            spec = replace(spec, confinement=contained.confinement(timeout_ms))
            outcome = run_invocation(InvocationSpec(
                child=spec, event=event, timeout_ms=timeout_ms,
                function_arn=runtimes.function_arn(self._settings), label=label,
                trace_id=context.trace_id,
            ), self._settings, sink=self._sink, sweep=contained.sweep)
            for name, value in outcome.timings_ms.items():
                phases.add(name, value / 1000)
        # Stopping the child, sweeping and removing the work dir: all that is not init/invoke.
        phases.add("cleanup", time.perf_counter() - started - sum(outcome.timings_ms.values())
                   / 1000)
        return outcome

    def _finish(self, attempt: _Attempt, response: Any, error: RunnerError | None) -> TaskResult:
        timings = attempt.phases.finish()
        outcome = attempt.outcome
        built = result.build(task_id=attempt.task_id, attempt=attempt.attempt,
                             response=response, error=error, bundle=attempt.bundle,
                             timings_ms=timings, logs=outcome.logs if outcome else None)
        error_type = built.error.type if built.error else None
        record_result(timings, error_type=error_type,
                      bundle_bytes=attempt.bundle.bytes if attempt.bundle else None,
                      cache_hit=attempt.bundle.cache_hit if attempt.bundle else None)
        logger.info("task finished", extra={"status": built.status, "error_type": error_type,
                                            "timings_ms": timings})
        return built


def _event_object(payload: TaskPayload) -> Any:
    """The task's event, checked before any step runs: with input queries it must be an object
    the results can be added to."""
    if payload.inputs.queries and (not isinstance(payload.event, dict)
                                   or INPUTS_KEY in payload.event):
        raise InvalidPayloadError(
            f"event: with inputs.queries the event must be a JSON object without a "
            f"{INPUTS_KEY!r} key (the query results go there)")
    return payload.event


def _event_bytes(event: Any) -> bytes:
    """The invocation event as sent to `/next` (the task's, with any query results)."""
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
    if len(data) > LAMBDA_RESPONSE_LIMIT:
        raise QueryFailedError(f"the event with its query results is {len(data)} bytes, "
                               f"over Lambda's {LAMBDA_RESPONSE_LIMIT}-byte payload limit",
                               retryable=False)
    return data


def parse_payload(raw: Any, attempt: _Attempt) -> TaskPayload:
    """The validated payload, or `Task.InvalidPayload` naming the fields (never their values:
    one of them is the token)."""
    if isinstance(raw, Mapping):
        attempt.task_id, attempt.attempt = _salvage(raw)
    try:
        payload = TaskPayload.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'payload'}: {err['msg']}"
                             for err in e.errors(include_input=False, include_url=False))
        raise InvalidPayloadError(f"invalid task payload: {problems}") from None
    attempt.task_id, attempt.attempt = payload.task_id, payload.attempt
    return payload


def _salvage(raw: Mapping[str, Any]) -> tuple[str | None, int | None]:
    """Task id and attempt for the result of a payload that may not validate."""
    task_id, number = raw.get("task_id"), raw.get("attempt")
    return (task_id if isinstance(task_id, str) and len(task_id) <= 128 else None,
            number if isinstance(number, int) and not isinstance(number, bool) else None)
