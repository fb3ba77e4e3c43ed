"""What every runtime's process sees: an environment built from nothing.

Nothing is copied from the runner's own environment, so the runner's role credentials and
settings cannot leak into the child (docs/contract.md#environment). The variables
are those Lambda gives a custom runtime (`provided.al2023`), plus the task's scoped credentials,
the `TRACE_*` variables and the task's own `env`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from runner.containment.workdir import WorkDirs
from runner.platform.minter import ScopedCredentials
from runner.settings import Settings

__all__ = ["PROVIDED_PATH", "TaskEnvironment", "function_arn", "lambda_env", "task_env"]

#: Lambda's PATH for OS-only runtimes (docs/runtime-api.md#environment).
PROVIDED_PATH = "/usr/local/bin:/usr/bin/:/bin:/opt/bin"


@dataclass(frozen=True)
class TaskEnvironment:
    """The task-specific part of the child's environment."""

    task_id: str
    attempt: int
    token: str = field(repr=False)
    query_url: str = ""
    credentials_url: str = ""
    output_prefix: str = ""
    credentials: ScopedCredentials | None = None
    user_env: Mapping[str, str] = field(default_factory=dict)
    # Only for the local stack: where the embedded S3 listens, so any AWS SDK in the bundle
    # reaches it unmodified. Never set in Lambda.
    s3_endpoint_url: str | None = None


def function_arn(settings: Settings) -> str:
    """The ARN the child is told it runs as."""
    return (f"arn:aws:lambda:{settings.region}:{settings.account_id}:function:"
            f"{settings.function_name}")


def lambda_env(settings: Settings, dirs: WorkDirs, runtime_dir: Path) -> dict[str, str]:
    """The variables Lambda itself sets for every runtime (docs/runtime-api.md#environment)."""
    stream = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
    root = str(dirs.task_root)
    return {
        "LAMBDA_TASK_ROOT": root,
        "LAMBDA_RUNTIME_DIR": str(runtime_dir),
        "AWS_LAMBDA_FUNCTION_NAME": settings.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(settings.function_memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{settings.function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": stream,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": settings.region,
        "AWS_DEFAULT_REGION": settings.region,
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        "PATH": PROVIDED_PATH,
        "LD_LIBRARY_PATH": f"/lib64:/usr/lib64:{runtime_dir}:{runtime_dir}/lib:{root}:{root}/lib:"
                           "/opt/lib",
        "HOME": str(dirs.home),
        "TMPDIR": str(dirs.tmp),
        "PWD": root,
    }


def task_env(task: TaskEnvironment) -> dict[str, str]:
    """The task's variables: its scoped credentials and the TRACE_* contract."""
    env = {
        "TRACE_TASK_ID": task.task_id,
        "TRACE_TASK_ATTEMPT": str(task.attempt),
        "TRACE_CAPABILITY_TOKEN": task.token,
        "TRACE_QUERY_URL": task.query_url,
        "TRACE_CREDENTIALS_URL": task.credentials_url,
        "TRACE_OUTPUT_PREFIX": task.output_prefix,
    }
    if task.credentials is not None:
        env |= {
            "AWS_ACCESS_KEY_ID": task.credentials.access_key_id,
            "AWS_SECRET_ACCESS_KEY": task.credentials.secret_access_key,
            "AWS_SESSION_TOKEN": task.credentials.session_token,
        }
    if task.s3_endpoint_url:
        env["AWS_ENDPOINT_URL_S3"] = task.s3_endpoint_url
    return env
