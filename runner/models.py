"""The task payload the control plane sends and the result the runner returns (docs/contract.md).

Both are strict: unknown fields are rejected, so a typo in the control plane fails loudly instead
of being ignored. `schemas/` holds their JSON Schema, exported by `runner.schema`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SecretStr,
    StringConstraints,
    model_validator,
)

__all__ = [
    "ALLOWED_NODE_OPTIONS",
    "ENV_TOTAL_LIMIT",
    "RESERVED_ENV_NAMES",
    "RESERVED_ENV_PREFIXES",
    "SCHEMA_VERSION",
    "BundleInfo",
    "BundleRef",
    "DatasetName",
    "EnvName",
    "ErrorInfo",
    "FunctionErrorBody",
    "Handler",
    "Inputs",
    "LogsInfo",
    "Outputs",
    "QueryName",
    "S3Prefix",
    "S3Uri",
    "Sha256",
    "TaskId",
    "TaskPayload",
    "TaskResult",
]

SCHEMA_VERSION = 1

#: Exact variable names a task's `env` may not set: the runtime's own contract with the bundle.
RESERVED_ENV_NAMES = frozenset({
    "_HANDLER", "PATH", "HOME", "TMPDIR", "TZ", "LANG", "PWD", "SHELL",
    "NODE_PATH", "NODE_EXTRA_CA_CERTS",
    "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "BASH_ENV", "ENV",
})
#: The Node options a task's `env` may set in `NODE_OPTIONS` (docs/contract.md#node-options):
#: the runner sizes Node's heap and decides what it loads, so nothing else may change either.
ALLOWED_NODE_OPTIONS = frozenset({"--enable-source-maps"})
#: Prefixes a task's `env` may not use (compared case-insensitively).
RESERVED_ENV_PREFIXES = (
    "AWS_", "LAMBDA_", "TRACE_", "LD_", "_X_AMZN_", "_AWS_", "_LAMBDA_", "UDF_RUNNER_",
)
#: Lambda's limit on a function's environment variables, names and values together.
ENV_TOTAL_LIMIT = 4096

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True)

TaskId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
#: S3's longest object key, in characters (its limit is 1,024 bytes of UTF-8).
_S3_KEY_MAX = 1024
#: `s3://` + the longest bucket name + `/` + the longest key: a bound the JSON Schema can state.
_S3_URI_MAX = 5 + 63 + 1 + _S3_KEY_MAX


def _key_length(limit: int) -> AfterValidator:
    """The key part of an `s3://` URI is at most `limit` characters. Checked apart from the
    pattern: a counted repetition of a wide character class ({1,1024}) is unrolled when the
    pattern is compiled, which cost 15 ms of every cold start."""
    def check(uri: str) -> str:
        if len(uri.removeprefix("s3://").partition("/")[2]) > limit:
            raise ValueError(f"the key part is over {limit} characters")
        return uri
    return AfterValidator(check)


S3Uri = Annotated[
    str,
    StringConstraints(pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^\x00-\x1f]+$",
                      max_length=_S3_URI_MAX),
    _key_length(_S3_KEY_MAX),
]
S3Prefix = Annotated[
    str,
    StringConstraints(pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/([^\x00-\x1f]*/)?$",
                      max_length=_S3_URI_MAX),
    _key_length(_S3_KEY_MAX),
]
DatasetName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
QueryName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]


def _check_handler(handler: str | None) -> str | None:
    if handler is not None and (".." in handler or handler.startswith("/")):
        raise ValueError("handler must be relative to the bundle root and must not contain '..'")
    return handler


Handler = Annotated[
    str | None,
    StringConstraints(pattern=r"^[^\s\x00]+$", max_length=128),
    AfterValidator(_check_handler),
]


class BundleRef(BaseModel):
    """Where the bundle is, what it must hash to, and how to run it."""

    model_config = _STRICT

    uri: S3Uri
    sha256: Sha256
    runtime: Literal["provided", "nodejs"]
    handler: Handler = None

    @model_validator(mode="after")
    def _node_needs_handler(self) -> Self:
        if self.runtime == "nodejs" and (self.handler is None or not _NODE_HANDLER.match(
                self.handler)):
            raise ValueError("a nodejs bundle needs a handler of the form 'path/file.export'")
        return self


_NODE_HANDLER = re.compile(r"^(?:[^/]+/)*[^/.]+\.[^/]+$")


class Inputs(BaseModel):
    """Datasets the task may read and named queries run before the invocation."""

    model_config = _STRICT

    datasets: Annotated[list[DatasetName], Field(max_length=64)] = []
    queries: Annotated[
        dict[QueryName, Annotated[str, StringConstraints(min_length=1, max_length=100_000)]],
        Field(max_length=32),
    ] = {}


class Outputs(BaseModel):
    """Where the function may write."""

    model_config = _STRICT

    s3_prefix: S3Prefix


def _check_env(env: dict[str, str]) -> dict[str, str]:
    for name, value in env.items():
        upper = name.upper()
        if upper in RESERVED_ENV_NAMES or upper.startswith(RESERVED_ENV_PREFIXES):
            raise ValueError(f"{name} is reserved by the runtime and cannot be set by a task")
        if upper == "NODE_OPTIONS":
            _check_node_options(value)
    total = sum(len(k.encode()) + len(v.encode()) for k, v in env.items())
    if total > ENV_TOTAL_LIMIT:
        raise ValueError(f"env is {total} bytes; Lambda allows {ENV_TOTAL_LIMIT}")
    return env


def _check_node_options(value: str) -> None:
    refused = [option for option in value.split() if option not in ALLOWED_NODE_OPTIONS]
    if refused:
        raise ValueError(f"NODE_OPTIONS may hold only {', '.join(sorted(ALLOWED_NODE_OPTIONS))}"
                         f", not {' '.join(refused)}")


class TaskPayload(BaseModel):
    """One task attempt, as the control plane sends it."""

    model_config = _STRICT

    schema_version: Literal[1]
    task_id: TaskId
    attempt: Annotated[int, Field(ge=1, le=1000)]
    capability_token: Annotated[SecretStr, Field(min_length=16, max_length=16_384)]
    bundle: BundleRef
    event: JsonValue = Field(default_factory=dict)
    timeout_ms: Annotated[int, Field(ge=1, le=900_000)]
    inputs: Inputs = Inputs()
    outputs: Outputs | None = None
    env: Annotated[
        dict[EnvName, Annotated[str, StringConstraints(max_length=4096)]],
        AfterValidator(_check_env),
    ] = {}


class FunctionErrorBody(BaseModel):
    """What the runtime posted to `init/error` or `invocation/error`, normalised."""

    model_config = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True,
                              validate_by_name=True, validate_by_alias=True)

    error_type: str = Field(alias="errorType")
    error_message: str = Field(alias="errorMessage")
    stack_trace: list[str] = Field(default_factory=list, alias="stackTrace")


class ErrorInfo(BaseModel):
    """Why the attempt failed, and whether the control plane may retry it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    message: str
    retryable: bool
    function_error: FunctionErrorBody | None = None


class BundleInfo(BaseModel):
    """The bundle that ran."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str
    bytes: int
    cache_hit: bool


class LogsInfo(BaseModel):
    """The end of what the function printed, how much it printed in all, and whether all of it
    reached the log stream: `truncated` when any was dropped (`dropped_bytes` of it: over the
    keep limit) or when the runner stopped the runtime while it was still writing (what it had
    not yet written is not counted)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tail: str = ""
    bytes: int = 0
    truncated: bool = False
    dropped_bytes: int = 0


class TaskResult(BaseModel):
    """What the runner returns for one attempt: exactly one of response or error is meaningful."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1
    task_id: str | None
    attempt: int | None
    status: Literal["succeeded", "failed"]
    response: JsonValue = None
    response_base64: str | None = None
    error: ErrorInfo | None = None
    bundle: BundleInfo | None = None
    timings_ms: dict[str, int] = Field(default_factory=dict)
    logs: LogsInfo = LogsInfo()
