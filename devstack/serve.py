"""`udf-runner serve`: Lambda's Invoke API on loopback, in front of the deployed handler.

    POST /2015-03-31/functions/{FunctionName}/invocations[?Qualifier=...]

is what `boto3.client("lambda", endpoint_url=...).invoke(...)` sends, so the control plane's
own code can run tasks locally, as `sam local start-lambda` lets it without Docker. Each
invocation runs `runner.app.lambda_handler` in an execution environment of
`devstack.environments`, on the local stack, with a fresh token from its issuer.

The answers are Lambda's (docs/runtime-api.md#invoke-api): a result, failed or not, is `200`
without `X-Amz-Function-Error`, since the handler returned it; `X-Amz-Function-Error: Unhandled`
only when the function itself failed (it raised, its process died, it timed out). Errors of the
API itself carry `x-amzn-ErrorType` and a `{"Type", "message"}` body, as botocore expects.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qs, unquote, urlsplit

from devstack.environments import Environments, Invoked, Throttled
from devstack.local_run import LocalRunner, runner_environ
from runner.containment.removal import remove_tree
from runner.settings import LAMBDA_RESPONSE_LIMIT

__all__ = ["FunctionConfig", "InvokeApi", "serve_forever"]

#: The names the function answers to: the deployed name, and the template's logical id (the
#: name `sam local start-lambda` serves it under).
FUNCTION_NAMES = ("udf-runner", "RunnerFunction")
#: Versions and aliases it has: `$LATEST`, and the alias the template publishes.
QUALIFIERS = ("$LATEST", "live")
_TENANT_ID = re.compile(r"[a-zA-Z0-9._:/=+\-@ ]{1,256}")
_INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")
# A name, a partial ARN (account:function:name) or a full ARN, with an optional qualifier.
_FUNCTION_REF = re.compile(
    r"^(?:(?:arn:aws[\w-]*:lambda:[a-z0-9-]+:)?\d{12}:function:)?(?P<name>[\w-]+)"
    r"(?::(?P<qualifier>\$LATEST|[\w-]+))?$")


@dataclass(frozen=True)
class FunctionConfig:
    """The served function, as the template configures the deployed one."""

    max_task_timeout_s: int = 300
    max_environments: int = 4
    region: str = "us-east-1"
    account_id: str = "000000000000"
    reissue_token: bool = True

    @property
    def timeout_ms(self) -> int:
        """The function's timeout: the longest task plus a minute around it (template.yaml)."""
        return (self.max_task_timeout_s + 60) * 1000

    def arn(self, name: str, qualifier: str | None = None) -> str:
        """The ARN Lambda names `name` by in its messages."""
        suffix = f":{qualifier}" if qualifier else ""
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{name}{suffix}"


class ApiError(Exception):
    """An error of the Invoke API itself (not of the function)."""

    def __init__(self, status: HTTPStatus, error_type: str, message: str,
                 extra: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.body = {"Type": "User", "message": message, **(extra or {})}


class InvokeApi:
    """The Invoke API on 127.0.0.1:`port`, serving from background threads."""

    def __init__(self, runner: LocalRunner, config: FunctionConfig, environments: Environments,
                 *, port: int = 0, log: TextIO = sys.stderr) -> None:
        self.runner = runner
        self.config = config
        self.environments = environments
        self._log = log
        self._upload_lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.api = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="invoke-api",
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The endpoint URL to give boto3."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def close(self) -> None:
        """Stop answering, then stop every environment."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
        self.environments.close()

    def invoke(self, method: str, path: str, headers: Mapping[str, str],
               body: bytes) -> tuple[int, bytes, dict[str, str]]:
        """Status, body and headers of Lambda's answer to one request (`headers` lower-case)."""
        name, qualifier = self._function(method, path)
        invocation_type = headers.get("x-amz-invocation-type", "RequestResponse")
        if invocation_type == "DryRun":
            return HTTPStatus.NO_CONTENT, b"", {}
        if invocation_type != "RequestResponse":
            raise ApiError(HTTPStatus.BAD_REQUEST, "InvalidParameterValueException",
                           f"udf-runner serve runs synchronous invocations only "
                           f"(RequestResponse or DryRun), not {invocation_type!r}")
        payload = _event(body)
        tenant = _tenant(headers.get("x-amz-tenant-id"))
        started = time.monotonic()
        invoked = self._run(payload, tenant)
        self._record(name, qualifier, tenant, invoked, time.monotonic() - started)
        # The alias `live` points at the code being served, which is the latest.
        answer = {"X-Amz-Executed-Version": "$LATEST"}
        if invoked.function_error:
            answer["X-Amz-Function-Error"] = invoked.function_error
        if headers.get("x-amz-log-type") == "Tail":
            answer["X-Amz-Log-Result"] = base64.b64encode(invoked.log_tail.encode()).decode()
        return HTTPStatus.OK, json.dumps(invoked.body).encode(), answer

    def _function(self, method: str, path: str) -> tuple[str, str | None]:
        """The function name and qualifier `path` invokes; Lambda's 404 for anything else."""
        parts = urlsplit(path)
        match = _INVOKE_PATH.match(parts.path)
        if match is None or method != "POST":
            raise ApiError(HTTPStatus.NOT_FOUND, "UnknownOperationException",
                           f"Unknown operation {method} {parts.path}")
        reference = unquote(match["name"])
        function = _FUNCTION_REF.match(reference)
        qualifiers = parse_qs(parts.query).get("Qualifier", [])
        qualifier = (function["qualifier"] if function else None) or \
            (qualifiers[0] if qualifiers else None)
        if function is None or function["name"] not in FUNCTION_NAMES or \
                qualifier not in (None, *QUALIFIERS):
            name = function["name"] if function else reference
            raise ApiError(HTTPStatus.NOT_FOUND, "ResourceNotFoundException",
                           f"Function not found: {self.config.arn(name, qualifier)}")
        return function["name"], qualifier

    def _run(self, payload: Any, tenant: str | None) -> Invoked:
        if isinstance(payload, dict):
            self._upload_sample(payload)
            if self.config.reissue_token:
                payload = self.runner.with_token(payload)
        try:
            environment = self.environments.acquire(tenant)
        except Throttled as e:
            raise ApiError(HTTPStatus.TOO_MANY_REQUESTS, "TooManyRequestsException",
                           f"Rate Exceeded. {e}",
                           {"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"}) from e
        try:
            return environment.invoke(payload, self.config.timeout_ms)
        finally:
            self.environments.release(environment)

    def _upload_sample(self, payload: dict[str, Any]) -> None:
        """The sample bundle an events/ payload names, as `udf-runner run-task` uploads it."""
        with self._upload_lock:
            try:
                self.runner.upload_sample_of(payload)
            except FileNotFoundError as e:
                self._log.write(f"udf-runner serve: samples not uploaded ({e})\n")

    def _record(self, name: str, qualifier: str | None, tenant: str | None, invoked: Invoked,
                seconds: float) -> None:
        body = invoked.body if isinstance(invoked.body, dict) else {}
        outcome = invoked.function_error or body.get("status", "?")
        error = body.get("error") or {}
        detail = f" {error.get('type')}" if isinstance(error, dict) and error else ""
        self._log.write(f"udf-runner serve: {name}{':' + qualifier if qualifier else ''} "
                        f"tenant={tenant or '-'} {outcome}{detail} in {seconds * 1000:.0f} ms\n")
        self._log.flush()


def _tenant(value: str | None) -> str | None:
    """The tenant id, checked as Lambda checks it; None when the request names none."""
    if value is None:
        return None
    if not _TENANT_ID.fullmatch(value):
        raise ApiError(HTTPStatus.BAD_REQUEST, "InvalidParameterValueException",
                       "TenantId must be 1 to 256 characters of letters, digits and . _ : / = + "
                       "- @ or space")
    return value


def _event(body: bytes) -> Any:
    """The invocation's event: the body as JSON (an empty body is `{}`, as in Lambda)."""
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ApiError(HTTPStatus.BAD_REQUEST, "InvalidRequestContentException",
                       f"Could not parse request body into json: Could not parse payload into "
                       f"json: {e}") from None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: InvokeApi


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "udf-runner-serve"
    sys_version = ""
    server: _Server

    def do_POST(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def do_DELETE(self) -> None:
        self._answer()

    def _answer(self) -> None:
        request_id = str(uuid.uuid4())
        try:
            status, data, headers = self.server.api.invoke(
                self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                self._body())
        except ApiError as e:
            status, data = e.status, json.dumps(e.body).encode()
            headers = {"x-amzn-ErrorType": e.error_type}
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", request_id)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit():
            self.close_connection = True
            raise ApiError(HTTPStatus.BAD_REQUEST, "InvalidRequestContentException",
                           "a Content-Length header is required")
        if int(length) > LAMBDA_RESPONSE_LIMIT:
            self.close_connection = True  # not read: the connection cannot carry another request
            raise ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "RequestTooLargeException",
                           f"Request must be smaller than {LAMBDA_RESPONSE_LIMIT} bytes for the "
                           "InvokeFunction operation")
        return self.rfile.read(int(length))

    def log_message(self, format: str, *args: Any) -> None:
        """Each invocation is recorded by `InvokeApi._record`, without the payload."""


@contextmanager
def invoke_api(runner: LocalRunner, config: FunctionConfig, *, port: int = 0,
               environ: Mapping[str, str] | None = None,
               log: TextIO = sys.stderr) -> Iterator[InvokeApi]:
    """The Invoke API on `runner`'s stack, its environments' work roots in a fresh directory;
    `environ` adds to (or overrides) the handler's environment."""
    work_base = Path(tempfile.mkdtemp(prefix="udf-runner-serve-"))
    try:
        work_base.chmod(0o711)  # a sandbox uid must reach the work roots below it
        environments = Environments(
            {**runner_environ(runner.access),
             "UDF_RUNNER_MAX_TIMEOUT_MS": str(config.max_task_timeout_s * 1000),
             "UDF_RUNNER_REGION": config.region, "UDF_RUNNER_ACCOUNT_ID": config.account_id,
             **(environ or {})},
            limit=config.max_environments, work_base=work_base)
        api = InvokeApi(runner, config, environments, port=port, log=log)
        try:
            yield api
        finally:
            api.close()
    finally:
        remove_tree(work_base)


def serve_forever(runner: LocalRunner, config: FunctionConfig, *, port: int,
                  stop: threading.Event, out: TextIO = sys.stdout) -> int:
    """`udf-runner serve`: answer until `stop` is set (SIGINT, SIGTERM)."""
    with invoke_api(runner, config, port=port) as api:
        out.write(_banner(api.url, config))
        out.flush()
        stop.wait()
        out.write("udf-runner serve: stopping\n")
        out.flush()
    return 0


def _banner(url: str, config: FunctionConfig) -> str:
    return "\n".join([
        f"udf-runner serve: Lambda's Invoke API on {url}",
        f"  function {FUNCTION_NAMES[0]} (or {FUNCTION_NAMES[1]}, or its ARN "
        f"{config.arn(FUNCTION_NAMES[0])}), qualifiers {', '.join(QUALIFIERS)}",
        f"  up to {config.max_environments} execution environments; tasks up to "
        f"{config.max_task_timeout_s} s; Ctrl-C stops",
        "",
        "  boto3.client('lambda', endpoint_url='" + url + "', region_name='"
        + config.region + "',",
        "               aws_access_key_id='local', aws_secret_access_key='local')"
        ".invoke(FunctionName='udf-runner', Payload=...)",
        "",
    ])
