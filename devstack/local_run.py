"""Task payloads run through the deployed handler, on a local stack: the `udf-runner` commands.

The handler (`runner.app.lambda_handler`) and everything below it are the function's own code;
only the platform around it is local: S3, the credential minter, the Query Service and a token
issuer (`devstack.stack`), and a Lambda context object.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack import samples
from devstack.access import StackAccess, StackError
from devstack.claims import Grant
from devstack.s3_server import EmbeddedS3

#: The Node.js layer `make layer` builds, used unless UDF_RUNNER_NODE_LAYER names another.
LOCAL_NODE_LAYER = Path(__file__).resolve().parents[1] / "layers" / "nodejs" / "build"
#: The runner's own time beyond the task's timeout (fetch, queries, cleanup), as in Lambda.
FUNCTION_MARGIN_MS = 60_000
#: Lambda's environment for the handler, as far as the local stack stands in for it.
_RUNNER_DEFAULTS = {
    "UDF_RUNNER_NODE_LAYER": str(LOCAL_NODE_LAYER),
    "POWERTOOLS_SERVICE_NAME": "udf-runner",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


@dataclass
class LocalContext:
    """The parts of Lambda's context object the handler uses."""

    timeout_ms: int
    function_name: str = "udf-runner-local"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:udf-runner-local"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/udf-runner-local"
    log_stream_name: str = "local"
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds before the function would time out."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def runner_environ(access: StackAccess) -> dict[str, str]:
    """The handler's environment on the stack `access` reaches (defaults under what is set)."""
    return {**_RUNNER_DEFAULTS, **access.runner_environ()}


class LocalRunner:
    """Runs payloads against one local stack."""

    def __init__(self, access: StackAccess) -> None:
        self.access = access
        self._uploaded: set[str] = set()
        for name, value in runner_environ(access).items():
            os.environ.setdefault(name, value)

    def upload_samples(self, uris: Container[str] | None = None) -> dict[str, str]:
        """Build the sample bundles (those at `uris`, or all) and put them in the stack's S3;
        name → SHA-256."""
        return {sample.name: self.access.upload_bundle(samples.build(sample), sample.uri)
                for sample in samples.ALL if uris is None or sample.uri in uris}

    def upload(self, bundle: bytes) -> tuple[str, str]:
        """Put a bundle in the stack's S3, named by its hash; (URI, SHA-256)."""
        uri = f"s3://udf-bundles/local/{hashlib.sha256(bundle).hexdigest()}.zip"
        return uri, self.access.upload_bundle(bundle, uri)

    def upload_sample_of(self, payload: Any) -> None:
        """Put in the stack's S3 the sample bundle `payload` names, once (nothing for a payload
        that names no sample); FileNotFoundError when the sample's tools are not installed."""
        bundle = payload.get("bundle") if isinstance(payload, dict) else None
        uri = bundle.get("uri") if isinstance(bundle, dict) else None
        if isinstance(uri, str) and uri not in self._uploaded:
            self.upload_samples({uri})
            self._uploaded.add(uri)

    def with_token(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """`payload` with a fresh token from the stack's issuer; a payload too broken to grant
        anything keeps its own, and the handler says why."""
        with contextlib.suppress(ValueError, TypeError, AttributeError, StackError):
            return {**payload, "capability_token": self.access.issue_token(grant_for(payload))}
        return dict(payload)

    def run(self, payload: Mapping[str, Any], *, reissue_token: bool = True) -> dict[str, Any]:
        """The handler's result for `payload`, with a fresh token from the stack's issuer."""
        if reissue_token:
            payload = self.with_token(payload)
        timeout_ms = payload.get("timeout_ms")
        context = LocalContext(timeout_ms=(timeout_ms if isinstance(timeout_ms, int) else 0)
                               + FUNCTION_MARGIN_MS)
        # The function logs to stdout, as in Lambda; here stdout is for the result alone.
        with contextlib.redirect_stdout(sys.stderr):
            from runner.app import lambda_handler  # noqa: PLC0415 - reads the env set above

            result: dict[str, Any] = lambda_handler(dict(payload), context)
        return result

    @contextlib.contextmanager
    def truncation_warnings(self, warn: Callable[[str, int], None]) -> Iterator[None]:
        """Within the block, `warn(query, rows kept)` for each input query result the runner
        received cut short (it logs a warning for each; this is that warning, as it happens)."""
        from runner.observability import logger  # noqa: PLC0415 - reads the env set above
        from runner.platform import TRUNCATED_MESSAGE  # noqa: PLC0415

        handler = _Truncations(TRUNCATED_MESSAGE, warn)
        runner_log = logging.getLogger(logger.service)
        runner_log.addHandler(handler)
        try:
            yield
        finally:
            runner_log.removeHandler(handler)


class _Truncations(logging.Handler):
    def __init__(self, message: str, warn: Callable[[str, int], None]) -> None:
        super().__init__(logging.WARNING)
        self._message = message
        self._warn = warn

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == self._message:
            self._warn(str(getattr(record, "query", "?")), int(getattr(record, "rows", 0)))


def grant_for(payload: Mapping[str, Any]) -> Grant:
    """What a token for `payload` grants: its bundle, datasets and output prefix."""
    bundle = payload.get("bundle") or {}
    inputs = payload.get("inputs") or {}
    outputs = payload.get("outputs") or {}
    return Grant.for_task(
        task_id=str(payload.get("task_id")), attempt=int(payload.get("attempt") or 1),
        bundle_uri=str(bundle.get("uri")), bundle_sha256=str(bundle.get("sha256")),
        datasets=list(inputs.get("datasets") or []), output_prefix=outputs.get("s3_prefix"),
    )


@contextlib.contextmanager
def local_runner(environ: Mapping[str, str] | None = None, *,
                 s3: EmbeddedS3 | None = None) -> Iterator[LocalRunner]:
    """A runner on the stack `environ` describes (`udf-runner devstack`'s exports), or on a
    stack started in this process for the duration of the block (with `s3`, the embedded S3
    already started for it, which the stack then owns)."""
    access = StackAccess.from_environ(os.environ if environ is None else environ)
    if access is not None:
        yield LocalRunner(access)
        return
    from devstack.stack import LocalStack  # noqa: PLC0415 - moto and DuckDB only when needed

    with LocalStack.start(s3=s3) as stack:
        yield LocalRunner(stack.access)
