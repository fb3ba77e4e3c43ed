"""The child's environment is built from nothing: the documented variables, and nothing of ours.

Canary secrets are planted in the runner's own environment; the child answers with the
environment the kernel gave it (`/proc/<pid>/environ`), which must hold none of them and exactly
the variables of docs/contract.md#environment, with the right values.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import pytest

from runner.platform import ScopedCredentials
from runner.runtimes.environment import PROVIDED_PATH
from runner.settings import Settings
from tests.support import fixture_bundles

CANARY = "canary-7f1d2c"
#: Variables the runner itself may hold (role credentials, its settings, anything of the host).
PLANTED = {
    "AWS_ACCESS_KEY_ID": f"AKIA{CANARY}",
    "AWS_SECRET_ACCESS_KEY": f"{CANARY}-role-secret",
    "AWS_SESSION_TOKEN": f"{CANARY}-role-token",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://169.254.170.2/{CANARY}",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN": CANARY,
    "UDF_RUNNER_SOMETHING": CANARY,
    "UDF_RUNNER_MINTER_URL": f"http://{CANARY}.internal",
    "MY_APP_SECRET": CANARY,
    "PYTHONPATH": f"/{CANARY}",
}
CREDENTIALS = ScopedCredentials(access_key_id="ASIASCOPEDEXAMPLE",
                                       secret_access_key="scoped-secret",
                                       session_token="scoped-session-token")
TOKEN = "eyJhbGciOiJFUzI1NiJ9.test-capability-token"
USER_ENV = {"USER_SETTING": "value", "ANOTHER_ONE": "2"}

#: docs/contract.md#environment (the Lambda variables as `runner.runtimes.environment` sets
#: them for a custom runtime), without the task's own `env`.
DOCUMENTED = {
    "_HANDLER", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_REGION", "AWS_DEFAULT_REGION", "TZ", "LANG", "PATH", "LD_LIBRARY_PATH", "HOME",
    "TMPDIR", "PWD",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "TRACE_TASK_ID", "TRACE_TASK_ATTEMPT", "TRACE_CAPABILITY_TOKEN", "TRACE_QUERY_URL",
    "TRACE_CREDENTIALS_URL", "TRACE_OUTPUT_PREFIX",
}
#: Documented, but only set on the local stack (where the embedded S3 listens).
OPTIONAL = {"AWS_ENDPOINT_URL_S3"}


@pytest.fixture
def child_env(settings: Settings) -> tuple[fixture_bundles.Run, bytes, dict[str, str]]:
    os.environ.update(PLANTED)  # restored after the test by conftest's autouse fixture
    run = fixture_bundles.invoke(fixture_bundles.bash_bundle("lifecycle"), settings, handler="env",
                          credentials=CREDENTIALS, token=TOKEN, user_env=USER_ENV)
    assert run.result.status == "succeeded", run.result
    assert run.result.response_base64 is not None
    raw = base64.b64decode(run.result.response_base64)
    env = dict(entry.split("=", 1) for entry in raw.decode().split("\0") if entry)
    return run, raw, env


def test_nothing_of_the_runners_environment_reaches_the_child(
        child_env: tuple[fixture_bundles.Run, bytes, dict[str, str]]) -> None:
    run, raw, env = child_env

    assert CANARY.encode() not in raw
    assert set(env) - DOCUMENTED - OPTIONAL - set(USER_ENV) == set()
    assert DOCUMENTED | set(USER_ENV) <= set(env)
    assert env["HOME"] != os.environ.get("HOME")
    assert CANARY not in "".join(run.lines)


def test_the_documented_variables_have_their_values(
        child_env: tuple[fixture_bundles.Run, bytes, dict[str, str]], settings: Settings) -> None:
    run, _, env = child_env
    root = str(run.task_root)
    attempt = run.task_root.parent

    assert env["_HANDLER"] == "env"
    assert env["LAMBDA_TASK_ROOT"] == root
    assert env["PWD"] == root
    assert env["LAMBDA_RUNTIME_DIR"] == root
    assert re.fullmatch(r"127\.0\.0\.1:\d{1,5}", env["AWS_LAMBDA_RUNTIME_API"])
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == settings.function_name
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == str(settings.function_memory_mb)
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{settings.function_name}"
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}",
                        env["AWS_LAMBDA_LOG_STREAM_NAME"])
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == settings.region
    assert env["TZ"] == ":UTC"
    assert env["LANG"] == "en_US.UTF-8"
    assert env["PATH"] == PROVIDED_PATH
    assert f":{root}:{root}/lib:" in env["LD_LIBRARY_PATH"]
    assert Path(env["HOME"]).parent == attempt
    assert Path(env["TMPDIR"]).parent == attempt
    assert env["AWS_ACCESS_KEY_ID"] == CREDENTIALS.access_key_id
    assert env["AWS_SECRET_ACCESS_KEY"] == CREDENTIALS.secret_access_key
    assert env["AWS_SESSION_TOKEN"] == CREDENTIALS.session_token
    assert env["TRACE_TASK_ID"] == fixture_bundles.TASK_ID
    assert env["TRACE_TASK_ATTEMPT"] == "1"
    assert env["TRACE_CAPABILITY_TOKEN"] == TOKEN
    assert env["TRACE_QUERY_URL"] == "http://127.0.0.1:9/query"
    assert env["TRACE_CREDENTIALS_URL"] == "http://127.0.0.1:9/credentials"
    assert env["TRACE_OUTPUT_PREFIX"] == "s3://udf-outputs/test-task/"
    for name, value in USER_ENV.items():
        assert env[name] == value


def test_the_child_runs_in_the_task_root_with_only_its_own_descriptors(
        child_env: tuple[fixture_bundles.Run, bytes, dict[str, str]]) -> None:
    run, _, _ = child_env

    assert run.printed("CWD ") == [str(run.task_root)]
    fds = dict(line.split(" ", 1) for line in run.printed("FD "))
    assert fds["0"] == "/dev/null"
    assert fds["1"].startswith("pipe:")
    assert fds["2"].startswith("pipe:")
    assert fds["1"] != fds["2"]
    # bash keeps its script open (on fd 255); nothing else is open, nothing inherited.
    others = {fd: target for fd, target in fds.items() if fd not in {"0", "1", "2"}}
    assert list(others.values()) == [str(run.task_root / "bootstrap")]
