"""Rust's `lambda_runtime` and Go's `aws-lambda-go`, built from source by their own toolchains,
against the runner's Runtime API emulation.

Three kinds of test, for each fact the clients' sources state about what they need:
- the client's own behaviour, run against a scripted server (what it sends, when it dies), so
  the fact is shown true of the pinned client and not only assumed;
- the runner's side of the same fact, byte for byte, through a recording proxy;
- each fixture through the runner (`run_invocation`, as `udf-runner invoke` runs it).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.containment.removal import remove_tree
from runner.runtimes import function_arn
from runner.settings import Settings
from tests.support import fixture_bundles, toolchains, wire
from tests.support.scripted_server import Reply, scripted
from tests.support.toolchains import Bundle, RustBundles

TIMEOUT_MS = 10_000
EVENT = {"answer": 42, "text": "héllo"}
TRACE_ID = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
#: A Client-Context that fits Rust's strict struct (string values; no partial `client`).
CLIENT_CONTEXT = '{"custom":{"colour":"blue"}}'
COGNITO = '{"cognitoIdentityId":"us-east-1:identity-1","cognitoIdentityPoolId":"us-east-1:pool-1"}'
#: Switch clients into other modes: concurrent polling, Go's net/rpc (and SnapStart's restore
#: call comes with AWS_LAMBDA_INITIALIZATION_TYPE=snap-start, checked to be `on-demand`).
NEVER_PASSED = ("AWS_LAMBDA_MAX_CONCURRENCY", "_LAMBDA_SERVER_PORT")
PRELUDE_END = b"\0" * 8
STREAM_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
#: The `/next` headers every client needs (Rust panics without the first two).
NEXT_HEADERS = {"Lambda-Runtime-Aws-Request-Id": "8476a536-e9f4-11e8-9739-2dfe598c3fcd",
                "Lambda-Runtime-Deadline-Ms": "4102444800000",
                "Lambda-Runtime-Invoked-Function-Arn":
                    "arn:aws:lambda:us-east-1:000000000000:function:f"}
#: What Lambda gives every custom runtime and the Rust client insists on.
CLIENT_ENV = {"AWS_LAMBDA_FUNCTION_NAME": "f", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
              "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST"}


@pytest.fixture(scope="session")
def rust() -> RustBundles:
    return toolchains.rust_bundles()


@pytest.fixture(scope="session")
def go() -> dict[str, Bundle]:
    return toolchains.go_bundles()


def _invoke(bundle: Bundle, settings: Settings, handler: str | None = None, *,
            event: Any = EVENT, timeout_ms: int = TIMEOUT_MS, trace_id: str | None = None,
            client_context: str | None = None, cognito_identity: str | None = None,
            ) -> fixture_bundles.Run:
    return fixture_bundles.invoke(bundle.folder, settings, handler=handler,
                           event=json.dumps(event).encode(), timeout_ms=timeout_ms,
                           trace_id=trace_id, client_context=client_context,
                           cognito_identity=cognito_identity)


def _with_context(bundle: Bundle, settings: Settings, handler: str | None = None
                  ) -> fixture_bundles.Run:
    return _invoke(bundle, settings, handler, trace_id=TRACE_ID, client_context=CLIENT_CONTEXT,
                   cognito_identity=COGNITO)


def _check_received(run: fixture_bundles.Run, settings: Settings) -> None:
    """The echo fixtures' report of what their client handed the handler."""
    assert run.result.status == "succeeded", run.result.error
    response = run.response
    got = response["received"]
    assert response["event"] == EVENT
    assert got["request_id"] == run.outcome.request_id
    assert got["deadline_ms"] == run.outcome.deadline_ms
    assert got["function_arn"] == function_arn(settings)
    assert got["trace_id"] == TRACE_ID
    assert got["client_context_custom"] == {"colour": "blue"}
    assert got["cognito_identity_id"] == "us-east-1:identity-1"
    assert got["function_name"] == settings.function_name
    assert got["memory_limit_in_mb"] == settings.function_memory_mb
    assert got["function_version"] == "$LATEST"
    assert got["log_group_name"] == f"/aws/lambda/{settings.function_name}"
    assert got["log_stream_name"]
    env = got["env"]
    # Go, Java and .NET prepend "http://" themselves: the value must be a bare host:port.
    assert re.fullmatch(r"127\.0\.0\.1:\d+", env["AWS_LAMBDA_RUNTIME_API"])
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["_X_AMZN_TRACE_ID"] == TRACE_ID  # both clients set it from the header
    assert not set(NEVER_PASSED) & env.keys()


def _function_error(run: fixture_bundles.Run) -> dict[str, Any]:
    assert run.result.status == "failed"
    assert run.result.error is not None
    assert run.result.error.type == "Function.Error", run.result.error
    dumped = run.result.model_dump(mode="json")["error"]["function_error"]
    assert isinstance(dumped, dict)
    return dumped


def _stream_parts(body: bytes) -> tuple[dict[str, Any], bytes]:
    """A streamed answer's JSON prelude and what follows its 8 NUL bytes."""
    prelude, sep, rest = body.partition(PRELUDE_END)
    assert sep, body[:200]
    parsed = json.loads(prelude)
    assert isinstance(parsed, dict)
    return parsed, rest


# --- Rust through the runner --------------------------------------------------------------------

def test_rust_echo_sees_the_whole_context(rust: RustBundles, settings: Settings) -> None:
    _check_received(_with_context(rust.abort, settings, "echo"), settings)


def test_rust_error_keeps_its_diagnostic(rust: RustBundles, settings: Settings) -> None:
    run = _invoke(rust.abort, settings, "error")

    # Posted with `lambda-runtime-function-error-type: unhandled`; the body's type is kept.
    assert _function_error(run) == {"errorType": "FixtureError",
                                    "errorMessage": "handler failed on purpose",
                                    "stackTrace": []}


def test_rust_abort_panic_is_an_exit_error_naming_the_signal(rust: RustBundles,
                                                             settings: Settings) -> None:
    run = _invoke(rust.abort, settings, "panic")

    assert run.result.error is not None
    assert run.result.error.type == "Runtime.ExitError"
    assert run.result.error.function_error is None  # nothing was posted: abort kills at once
    assert run.result.error.message == (
        f"RequestId: {run.outcome.request_id} Error: Runtime exited with error: "
        "signal: aborted (SIGABRT)")
    assert any("panicked on purpose" in line for line in run.lines)


def test_rust_unwind_panic_is_the_posted_error(rust: RustBundles, settings: Settings) -> None:
    run = _invoke(rust.unwind, settings, "panic")

    error = _function_error(run)
    assert error["errorMessage"] == "Lambda panicked: panicked on purpose"
    assert error["errorType"].startswith("&alloc::boxed::Box<dyn core::any::Any")


def test_rust_one_mebibyte_response(rust: RustBundles, settings: Settings) -> None:
    run = _invoke(rust.abort, settings, "big")

    assert run.result.status == "succeeded", run.result.error
    assert run.result.response == "x" * (1 << 20)


def test_rust_stream_is_prelude_nul_bytes_then_the_body(rust: RustBundles,
                                                        settings: Settings) -> None:
    run = _invoke(rust.abort, settings, "stream")

    assert run.outcome.response is not None, run.result.error
    assert run.outcome.response.content_type == STREAM_CONTENT_TYPE
    prelude, body = _stream_parts(run.outcome.response.body)
    assert prelude == {"statusCode": 201, "cookies": [],
                       "headers": {"content-type": "text/plain", "x-fixture": "rust"}}
    assert body == b"chunk 1\nchunk 2\n"


def test_rust_mid_stream_error_arrives_in_band(rust: RustBundles, settings: Settings) -> None:
    """Rust writes a failed stream's error into the body, not as HTTP trailers, so Lambda (and
    the runner) pass it through as the response's last bytes."""
    run = _invoke(rust.abort, settings, "stream-error")

    assert run.outcome.response is not None, run.result.error
    _, body = _stream_parts(run.outcome.response.body)
    encoded = base64.b64encode(b"stream failed on purpose").decode()
    assert body == (b"partial\n" b"Lambda-Runtime-Function-Error-Type: Runtime.StreamError\r\n"
                    b"Lambda-Runtime-Function-Error-Body: " + encoded.encode() + b"\r\n")


@pytest.mark.parametrize(("client_context", "cognito_identity"), [
    ('{"custom":{"n":1}}', None),  # a non-string value in `custom`
    ('{"custom":{"name":"é"}}', None),  # a header value that is not ASCII
    (None, "{}"),  # an identity without its two ids
])
def test_rust_dies_without_posting_on_a_malformed_optional_header(
        rust: RustBundles, settings: Settings, client_context: str | None,
        cognito_identity: str | None) -> None:
    """An optional `/next` header Rust's strict parsing refuses ends the runtime: the runner
    never sends one (the pipeline has neither a client context nor an identity to send), and
    reports the death, not a hang."""
    run = _invoke(rust.abort, settings, "echo", client_context=client_context,
                  cognito_identity=cognito_identity)

    assert run.result.error is not None
    assert run.result.error.type == "Runtime.ExitError"
    assert run.result.error.function_error is None
    assert run.result.error.message.endswith("Runtime exited with error: exit status 1")


def test_rust_graceful_shutdown_registers_an_extension_and_gets_sigterm(
        rust: RustBundles, settings: Settings) -> None:
    """`spawn_graceful_shutdown_handler` registers an internal extension before `run` and
    panics when the Extensions API is missing. Registered, the runtime is stopped as Lambda
    shuts an environment down: SIGTERM first, so its hook runs."""
    run = _invoke(rust.abort, settings, "graceful")

    assert run.result.status == "succeeded", run.result.error
    assert run.response["event"] == EVENT
    assert run.printed("GRACEFUL ") == ["shutdown hook ran"]


# --- Go through the runner ----------------------------------------------------------------------

def test_go_echo_sees_the_whole_context(go: dict[str, Bundle], settings: Settings) -> None:
    _check_received(_with_context(go["echo"], settings), settings)


def test_go_error_type_comes_from_the_body(go: dict[str, Bundle], settings: Settings) -> None:
    run = _invoke(go["error"], settings)

    assert _function_error(run) == {"errorType": "FixtureError",
                                    "errorMessage": "handler failed on purpose",
                                    "stackTrace": []}


def test_go_panic_keeps_the_posted_error_not_the_exit(go: dict[str, Bundle],
                                                      settings: Settings) -> None:
    """aws-lambda-go posts the panic, then exits 1 on purpose: the posted error stands."""
    run = _invoke(go["panic"], settings)

    error = _function_error(run)
    assert error["errorType"] == "string"
    assert error["errorMessage"] == "panicked on purpose"
    assert error["stackTrace"]


def test_go_deadline_is_the_runners(go: dict[str, Bundle], settings: Settings) -> None:
    run = _invoke(go["deadline"], settings)

    assert run.response["deadline_ms"] == run.outcome.deadline_ms
    assert 0 < run.response["remaining_ms"] <= TIMEOUT_MS


def test_go_past_its_deadline_times_out(go: dict[str, Bundle], settings: Settings) -> None:
    run = _invoke(go["deadline"], settings, event={"wait": True}, timeout_ms=1000)

    assert run.result.error is not None
    assert run.result.error.type == "Sandbox.Timedout"
    assert run.result.error.message.endswith("Task timed out after 1.00 seconds")


def test_go_lambdaurl_stream(go: dict[str, Bundle], settings: Settings) -> None:
    run = _invoke(go["stream"], settings, event={})

    assert run.outcome.response is not None, run.result.error
    assert run.outcome.response.content_type == STREAM_CONTENT_TYPE
    prelude, body = _stream_parts(run.outcome.response.body)
    assert prelude == {"statusCode": 201,
                       "headers": {"Content-Type": "text/plain", "X-Fixture": "go"}}
    assert body == b"chunk 1\nchunk 2\n"


def test_go_reader_failing_midway_is_the_error_its_trailers_name(
        go: dict[str, Bundle], settings: Settings, wire_dir: Path) -> None:
    """A buffered (not streaming) answer whose reader fails: Go has already sent the first
    bytes, so it names the error in real HTTP trailers of the chunked body."""
    run, proxy = _through_proxy(go["readerror"], settings, wire_dir, None)

    assert _function_error(run) == {"errorType": "ReadError",
                                    "errorMessage": "reader failed on purpose",
                                    "stackTrace": []}
    posted, _ = proxy.request("/response")
    assert posted.values("Lambda-Runtime-Function-Response-Mode") == []
    assert b"\r\nLambda-Runtime-Function-Error-Type: ReadError\r\n" in posted.rest
    assert _answered(proxy, "/response") == 202


def test_go_sigterm_option_registers_an_extension_and_gets_sigterm(
        go: dict[str, Bundle], settings: Settings) -> None:
    """lambda.WithEnableSIGTERM registers an internal extension (only warning when it cannot);
    registered, its handlers run when the runner stops the runtime."""
    run = _invoke(go["sigterm"], settings)

    assert run.result.status == "succeeded", run.result.error
    assert run.response == {"event": EVENT}
    assert run.printed("SIGTERM ") == ["handler ran"]
    assert not [line for line in run.lines if "Failed to register internal extension" in line]


# --- On the wire, through a recording proxy -----------------------------------------------------

@pytest.fixture
def wire_dir() -> Iterator[Path]:
    """Where the wrapper writes the runner's address: reachable by the sandbox uid too."""
    base = Path(tempfile.mkdtemp(prefix="udf-runner-wire-"))
    base.chmod(0o777)
    try:
        yield base
    finally:
        remove_tree(base)


def _through_proxy(bundle: Bundle, settings: Settings, wire_dir: Path, handler: str | None,
                   event: Any = EVENT) -> tuple[fixture_bundles.Run, wire.RecordingProxy]:
    upstream = wire_dir / "upstream"
    proxy = wire.RecordingProxy(upstream)
    try:
        run = fixture_bundles.invoke(
            wire.wrap_bundle(bundle.folder, wire_dir / "bundle"), settings, handler=handler,
            event=json.dumps(event).encode(), timeout_ms=TIMEOUT_MS,
            user_env={wire.PROXY_ADDRESS_VAR: proxy.address,
                      wire.UPSTREAM_FILE_VAR: str(upstream)})
    finally:
        proxy.close()
    return run, proxy


def _answered(proxy: wire.RecordingProxy, path_suffix: str) -> int:
    """The status the runner gave the request whose path ends with `path_suffix`."""
    request, exchange = proxy.request(path_suffix)
    sent = wire.requests_in(bytes(exchange.sent))
    return wire.statuses_in(bytes(exchange.answered))[sent.index(request)]


def test_go_posts_chunked_with_trailers_and_gets_exactly_200_and_202(
        go: dict[str, Bundle], settings: Settings, wire_dir: Path) -> None:
    run, proxy = _through_proxy(go["echo"], settings, wire_dir, None)

    assert run.result.status == "succeeded", run.result.error
    posted, _ = proxy.request("/response")
    assert posted.values("Transfer-Encoding") == ["chunked"]
    assert posted.values("Content-Length") == []
    assert posted.values("Trailer") == [
        "Lambda-Runtime-Function-Error-Body,Lambda-Runtime-Function-Error-Type"]
    # aws-lambda-go exits unless /next gets exactly 200 and /response exactly 202.
    assert _answered(proxy, "/invocation/next") == 200
    assert _answered(proxy, "/response") == 202


def test_go_error_is_chunked_without_an_error_type_header_and_gets_202(
        go: dict[str, Bundle], settings: Settings, wire_dir: Path) -> None:
    run, proxy = _through_proxy(go["error"], settings, wire_dir, None)

    assert _function_error(run)["errorType"] == "FixtureError"
    posted, _ = proxy.request("/error")
    assert posted.values("Transfer-Encoding") == ["chunked"]
    assert posted.values("Lambda-Runtime-Function-Error-Type") == []
    assert _answered(proxy, "/error") == 202


def test_rust_sends_lower_case_headers_and_no_content_type(
        rust: RustBundles, settings: Settings, wire_dir: Path) -> None:
    run, proxy = _through_proxy(rust.abort, settings, wire_dir, "echo")

    assert run.result.status == "succeeded", run.result.error
    posted, _ = proxy.request("/response")
    names = [name for name, _ in posted.headers]
    assert names == [name.lower() for name in names]
    assert posted.values("content-type") == []
    assert posted.values("content-length")
    assert run.outcome.response is not None
    assert run.outcome.response.content_type == "application/octet-stream"
    assert _answered(proxy, "/response") == 202


def test_rust_error_header_is_lower_case_unhandled(
        rust: RustBundles, settings: Settings, wire_dir: Path) -> None:
    run, proxy = _through_proxy(rust.abort, settings, wire_dir, "error")

    assert _function_error(run)["errorType"] == "FixtureError"
    posted, _ = proxy.request("/error")
    assert ("lambda-runtime-function-error-type", "unhandled") in posted.headers
    assert posted.values("content-type") == []
    assert _answered(proxy, "/error") == 202


def test_rust_stream_sends_two_trailer_lines_and_the_mode(
        rust: RustBundles, settings: Settings, wire_dir: Path) -> None:
    run, proxy = _through_proxy(rust.abort, settings, wire_dir, "stream")

    assert run.result.status == "succeeded", run.result.error
    posted, _ = proxy.request("/response")
    assert posted.values("lambda-runtime-function-response-mode") == ["streaming"]
    assert posted.values("trailer") == ["Lambda-Runtime-Function-Error-Type",
                                        "Lambda-Runtime-Function-Error-Body"]
    assert posted.values("content-type") == [STREAM_CONTENT_TYPE]
    assert _answered(proxy, "/response") == 202


# --- The clients' own behaviour, against a scripted Runtime API ---------------------------------

def _run_client(bundle: Bundle, address: str, env: dict[str, str] | None = None,
                ) -> subprocess.CompletedProcess[str]:
    """Run a bundle's bootstrap against `address` until it exits (a scripted server makes it)."""
    return subprocess.run(
        [str(bundle.folder / "bootstrap")], cwd=bundle.folder, capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", "AWS_LAMBDA_RUNTIME_API": address, **(env or {})},
        timeout=60, check=False)


def _next(**headers: str) -> Reply:
    return Reply(200, {}, headers)


@pytest.mark.parametrize(("name", "replies"), [
    ("echo", [Reply(202, {}, NEXT_HEADERS)]),  # /next must be exactly 200
    ("echo", [_next(**NEXT_HEADERS), Reply(200, {"status": "OK"})]),  # /response exactly 202
    ("error", [_next(**NEXT_HEADERS), Reply(200, {"status": "OK"})]),  # /error exactly 202
])
def test_go_exits_unless_the_status_is_exact(go: dict[str, Bundle], name: str,
                                             replies: list[Reply]) -> None:
    with scripted(*replies, Reply(hang=True)) as server:
        done = _run_client(go[name], server.url.removeprefix("http://"))

    assert done.returncode == 1
    status = replies[-1].status
    assert f"got unexpected status code: {status}" in done.stderr, done.stderr


def test_go_prepends_http_itself(go: dict[str, Bundle]) -> None:
    with scripted(Reply(hang=True)) as server:
        done = _run_client(go["echo"], server.url)  # "http://127.0.0.1:N", as a runner might

    assert done.returncode == 1
    assert '"http://http//127.0.0.1:' in done.stderr  # the URL it built: no host left
    assert server.seen == []


@pytest.mark.parametrize(("missing", "value"), [
    ("AWS_LAMBDA_FUNCTION_NAME", None),
    ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", None),
    ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128MB"),
    ("AWS_LAMBDA_FUNCTION_VERSION", None),
])
def test_rust_panics_at_start_without_its_env(rust: RustBundles, missing: str,
                                              value: str | None) -> None:
    env = {k: v for k, v in CLIENT_ENV.items() if k != missing}
    if value is not None:
        env[missing] = value
    with scripted(_next(**NEXT_HEADERS), Reply(hang=True)) as server:
        done = _run_client(rust.abort, server.url.removeprefix("http://"), env)

    assert done.returncode == -6  # SIGABRT: the panic aborts (cargo-lambda's default)
    assert missing in done.stderr
    assert server.seen == []


@pytest.mark.parametrize("dropped", ["Lambda-Runtime-Aws-Request-Id",
                                     "Lambda-Runtime-Deadline-Ms"])
def test_rust_panics_without_a_required_next_header(rust: RustBundles, dropped: str) -> None:
    headers = {k: v for k, v in NEXT_HEADERS.items() if k != dropped}
    with scripted(_next(**headers), Reply(hang=True)) as server:
        done = _run_client(rust.abort, server.url.removeprefix("http://"),
                           {**CLIENT_ENV, "_HANDLER": "echo"})

    assert done.returncode == -6
    assert dropped.lower() in done.stderr
    assert [seen.method for seen in server.seen] == ["GET"]  # nothing posted


def test_the_runner_gives_clients_none_of_the_mode_switches(
        go: dict[str, Bundle], rust: RustBundles, settings: Settings) -> None:
    """Even when the runner's own environment has them (as a managed-instances or SnapStart
    host would), no child gets the variables that change a client's mode."""
    os.environ.update(dict.fromkeys(NEVER_PASSED, "4"))
    os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"] = "snap-start"

    for run in (_invoke(go["echo"], settings), _invoke(rust.abort, settings, "echo")):
        env = run.response["received"]["env"]
        assert not set(NEVER_PASSED) & env.keys()
        assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
