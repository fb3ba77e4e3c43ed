"""The runner's configuration, read once from the environment into one typed object.

Every variable the runner reads for its configuration is named here: its own `UDF_RUNNER_*`,
the Lambda variables it takes defaults from, and Powertools' names (`PowertoolsNames`). The one
other variable it reads is Lambda's `_X_AMZN_TRACE_ID`, which changes with each invocation and
so is read by the handler. Tests build `Settings` from a dict instead of patching `os.environ`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

__all__ = [
    "LAMBDA_PRESENCE_VARS",
    "LAMBDA_RESPONSE_LIMIT",
    "LAMBDA_UNZIPPED_LIMIT",
    "PREFIX",
    "RESPONSE_CEILING",
    "RESULT_ENVELOPE_RESERVE",
    "RUNTIME_API_PAYLOAD_LIMIT",
    "Bytes",
    "Id",
    "Paths",
    "PowertoolsNames",
    "Settings",
    "SettingsError",
]

#: Prefix of every variable the runner reads for its own configuration.
PREFIX = "UDF_RUNNER_"

#: Lambda's own limit on a synchronous response, which also bounds the runner's result.
LAMBDA_RESPONSE_LIMIT = 6_291_456
#: What the Runtime API accepts from a runtime (6 MiB + 100, `interop.MaxPayloadSize`).
RUNTIME_API_PAYLOAD_LIMIT = 6_291_556
#: Room kept in the runner's own 6 MB response for the result envelope around the function's
#: response (ids, timings, a bounded log tail and error message).
RESULT_ENVELOPE_RESERVE = 32 * 1024
#: Lambda's limit on a function's unzipped code, layers included.
LAMBDA_UNZIPPED_LIMIT = 262_144_000
#: The largest function response the runner accepts by default and at most.
RESPONSE_CEILING = min(RUNTIME_API_PAYLOAD_LIMIT, LAMBDA_RESPONSE_LIMIT - RESULT_ENVELOPE_RESERVE)

Bytes = Annotated[int, Field(ge=0)]


def _split_paths(value: Any) -> Any:
    return tuple(part for part in value.split(":") if part) if isinstance(value, str) else value


#: Paths, read from the environment as a colon-separated list (like PATH).
Paths = Annotated[tuple[Path, ...], BeforeValidator(_split_paths)]
#: A uid or gid an unprivileged child may run as (never root).
Id = Annotated[int, Field(ge=1, le=2**31 - 2)]


class SettingsError(ValueError):
    """The runner's configuration is invalid; raised at cold start, before any task runs."""


class Settings(BaseModel):
    """Configuration of the runner; each field is read from `UDF_RUNNER_<FIELD>`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Where per-attempt work dirs and the verified-zip cache live (Lambda: /tmp).
    work_root: Path = Path("/tmp/udf-runner")  # noqa: S108 - Lambda's only writable place
    # Root of the Node.js layer: `bin/node` and `nodejs/node_modules/aws-lambda-ric`.
    node_layer: Path = Path("/opt")

    # Runtime API emulation.
    # Lambda's Runtime API takes up to 6291556 bytes, but the response must also fit inside the
    # runner's own 6 MB result, so the default (and the ceiling) is what still fits there.
    max_response_bytes: Annotated[int, Field(ge=0, le=RESPONSE_CEILING)] = RESPONSE_CEILING
    function_name: str = "udf"
    function_memory_mb: Annotated[int, Field(ge=128, le=10_240)] = 1024
    account_id: Annotated[str, Field(pattern=r"^[0-9]{12}$")] = "000000000000"
    region: str = "us-east-1"

    # Child process.
    term_grace_ms: Annotated[int, Field(ge=0, le=10_000)] = 500
    log_keep_bytes: Bytes = 1024 * 1024
    log_tail_bytes: Annotated[int, Field(ge=0, le=16 * 1024)] = 4 * 1024
    log_line_bytes: Annotated[int, Field(ge=80, le=256 * 1024)] = 16 * 1024
    # After the answer, how long the runtime may take to get back to `next` (or exit) while
    # its output is still read: Node's writes to a pipe, a bootstrap's buffer flushed at exit.
    log_flush_grace_ms: Annotated[int, Field(ge=0, le=10_000)] = 500

    # Containment (runner.containment, docs/security.md).
    # The uid/gid the child runs as when the runner is root: one no other service uses (it
    # needs no passwd entry); every process of it is killed after each attempt.
    sandbox_uid: Id = 64200
    sandbox_gid: Id = 64200
    # Not root: "lambda" means the execution environment is the runner's alone (every new
    # process of its uid is killed, and /tmp is wiped outside the runner's own files after each
    # attempt); "local" is a developer's machine (neither); "auto" is "lambda" when `in_lambda`.
    execution_environment: Literal["auto", "lambda", "local"] = "auto"
    # Lambda's AWS_LAMBDA_FUNCTION_NAME and AWS_LAMBDA_RUNTIME_API are both set (not read from
    # a UDF_RUNNER_* variable: it says where the process runs, not how to run).
    in_lambda: bool = False
    # Refuse to run bundles when a control they rely on is missing (false: local use only).
    containment_required: bool = True
    # World-writable places the child may write to outside its work dir, cleaned after it.
    scratch_dirs: Paths = tuple(map(Path, ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")))  # noqa: S108 - what is cleaned, not used
    # Resource limits of the child (runner.containment.limits).
    child_max_processes: Annotated[int, Field(ge=1)] = 256  # processes and threads it may add
    child_max_open_files: Annotated[int, Field(ge=16)] = 1024
    child_max_file_bytes: Bytes = 1024 * 1024 * 1024
    child_max_data_bytes: Bytes = 0  # 0: the function's memory size

    # Task limits.
    max_timeout_ms: Annotated[int, Field(ge=1, le=900_000)] = 900_000

    # Platform services (docs/contract.md#services): the credential minter and the Query
    # Service. Empty means "not configured"; the local stack fills them in for development.
    minter_url: str = ""
    query_url: str = ""
    # Only for the local stack: the embedded S3 server. Never set in Lambda.
    s3_endpoint_url: str = ""
    # Attempts per S3 request, the first included (throttling, 5xx, connection failures and
    # timeouts are retried with exponential backoff and full jitter, within the deadline).
    s3_max_attempts: Annotated[int, Field(ge=1, le=10)] = 5

    # Rows each input query may return (the Query Service caps it too).
    query_max_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000

    # Bundles.
    max_bundle_bytes: Bytes = LAMBDA_UNZIPPED_LIMIT  # compressed size, enforced while streaming
    cache_max_bytes: Bytes = 512 * 1024 * 1024
    # Extraction (runner.bundle.extract): what the zip may unpack to.
    max_unzipped_bytes: Bytes = LAMBDA_UNZIPPED_LIMIT
    max_bundle_entries: Annotated[int, Field(ge=1)] = 50_000
    # Per entry, declared size : compressed size, for entries over 1 MiB (runner.bundle.extract).
    max_compression_ratio: Annotated[int, Field(ge=1)] = 100

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read `UDF_RUNNER_*` (and Lambda's `AWS_REGION` etc.) from `environ`."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.model_fields.keys() - _DETECTED:
            raw = env.get(PREFIX + name.upper())
            if raw is not None:
                values[name] = raw
        for field, lambda_var in _LAMBDA_VARS.items():
            if field not in values and env.get(lambda_var):
                values[field] = env[lambda_var]
        values["in_lambda"] = all(env.get(name) for name in LAMBDA_PRESENCE_VARS)
        try:
            return cls.model_validate(values)
        except ValidationError as e:
            raise SettingsError(_describe(e)) from e


# Lambda's own variables that provide a default when no UDF_RUNNER_* value is set.
_LAMBDA_VARS = {
    "region": "AWS_REGION",
    "function_memory_mb": "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
}
#: Set (both) only inside a Lambda execution environment.
LAMBDA_PRESENCE_VARS = ("AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_RUNTIME_API")
#: Fields that describe where the runner runs, detected rather than configured.
_DETECTED = frozenset({"in_lambda"})


@dataclass(frozen=True)
class PowertoolsNames:
    """The service name and metrics namespace of the runner's logs and metrics. Read apart from
    `Settings` because the logger exists before the settings are read (every module logs)."""

    service: str = "udf-runner"
    metrics_namespace: str = "UdfRunner"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PowertoolsNames:
        """Read Powertools' own `POWERTOOLS_SERVICE_NAME` and `POWERTOOLS_METRICS_NAMESPACE`."""
        env = os.environ if environ is None else environ
        return cls(service=env.get("POWERTOOLS_SERVICE_NAME") or cls.service,
                   metrics_namespace=env.get("POWERTOOLS_METRICS_NAMESPACE")
                   or cls.metrics_namespace)


def _describe(error: ValidationError) -> str:
    return "; ".join(
        f"{PREFIX}{'.'.join(map(str, err['loc'])).upper()}: {err['msg']}" for err in error.errors()
    )
