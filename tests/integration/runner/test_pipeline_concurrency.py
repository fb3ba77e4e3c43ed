"""The steps before the invocation run together through the whole pipeline: the queries are in
flight at the same time as each other and as the fetch, a failing query cancels a fetch in
progress, the deadline bounds them all, and an attempt leaves no thread, socket or file behind.

The services that must misbehave on cue are loopback stand-ins gated on events; the token, the
bundle and everything else are the local stack's.
"""

from __future__ import annotations

import gc
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import LocalStack
from runner.pipeline import CLEANUP_MARGIN_MS, InvokeContext
from tests.support.scripted_server import Reply, scripted
from tests.support.tasks import Tasks, pipeline_bundle, response_of, settings_for

ROWS = {"columns": [{"name": "n", "type": "INTEGER"}], "rows": [[1]], "truncated": False}
CREDENTIALS = {"access_key_id": "AKIASTANDIN000000000", "secret_access_key": "secret",
               "session_token": "token", "expiration": "2099-01-01T00:00:00Z"}
#: Longest wait on a gate: a runner that never gets there fails the test instead of hanging it.
WAIT = 20.0
#: What the slow S3 declares and what it sends before stalling.
DECLARED, SENT = 8 * 1024 * 1024, 256 * 1024


class Request(BaseHTTPRequestHandler):
    """One request to a `Gated` server, its body read."""

    protocol_version = "HTTP/1.1"
    body = b""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        self.body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        server = self.server
        assert isinstance(server, Gated)
        server.respond(self)


class Gated(ThreadingHTTPServer):
    """A loopback server whose answer (`respond`) may wait on the test's events."""

    daemon_threads = True

    def __init__(self, respond: Callable[[Request], None]) -> None:
        self.respond = respond
        super().__init__(("127.0.0.1", 0), Request)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextmanager
def serving(respond: Callable[[Request], None]) -> Iterator[Gated]:
    server = Gated(respond)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _json(handler: Request, status: int, body: Any) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class SlowS3:
    """Sends the start of a large object, then stalls until the client hangs up."""

    def __init__(self) -> None:
        self.streaming = threading.Event()
        self.hung_up = threading.Event()

    def __call__(self, handler: Request) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/zip")
        handler.send_header("Content-Length", str(DECLARED))
        handler.end_headers()
        handler.wfile.write(b"\0" * SENT)
        handler.wfile.flush()
        self.streaming.set()
        handler.connection.settimeout(WAIT)
        try:
            if handler.connection.recv(1) == b"":
                self.hung_up.set()
        except ConnectionError:  # a reset: closed with our bytes still unread, gone all the same
            self.hung_up.set()
        except TimeoutError:
            pass
        handler.close_connection = True


def _fds(kind: Callable[[str], bool]) -> int:
    """Open file descriptors of this process whose target `kind` accepts."""
    gc.collect()  # garbage of earlier tests, whose descriptors must not close between counts
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            count += kind(str(fd.readlink()))
        except OSError:  # the listing's own descriptor, gone by now
            continue
    return count


def _sockets_to(url: str) -> int:
    """Open sockets of this process connected to the port of `url` (the pool keeps its
    connections to the minter, the Query Service and S3 for the next task on purpose, but only
    those whose answer was read to its end; a connection a cut-short download left open would
    be a leak)."""
    port = f":{int(url.rsplit(':', 1)[1]):04X}"
    inodes = set()
    for line in Path("/proc/self/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2].endswith(port):
            inodes.add(f"socket:[{fields[9]}]")
    return _fds(lambda target: target in inodes)


def _open_files() -> int:
    return _fds(lambda target: target.startswith("/"))


def _queries_task(tasks: Tasks, queries: dict[str, str]) -> dict[str, Any]:
    uri, sha256 = tasks.upload(pipeline_bundle())
    return tasks.payload(uri, sha256, inputs={"datasets": ["blocks"], "queries": queries})


def test_input_queries_are_in_flight_at_the_same_time(local_stack: LocalStack,
                                                      work_root: Path) -> None:
    together = threading.Barrier(3, timeout=WAIT)  # breaks unless all three queries wait at once

    def query(handler: Request) -> None:
        together.wait()
        _json(handler, 200, ROWS)

    with serving(query) as service:
        tasks = Tasks(local_stack, settings_for(local_stack, work_root, query_url=service.url))
        result = tasks.run(_queries_task(tasks, {"a": "select 1", "b": "select 2",
                                                 "c": "select 3"}))

    event = response_of(result)["event"]
    assert list(event["trace_inputs"]["queries"]) == ["a", "b", "c"]
    assert "queries" in result.timings_ms


def test_a_failing_query_cancels_the_fetch_in_progress(local_stack: LocalStack,
                                                       work_root: Path) -> None:
    s3 = SlowS3()

    def refuse_once_streaming(handler: Request) -> None:
        assert s3.streaming.wait(WAIT)
        _json(handler, 400, {"error": {"message": "Parser Error: syntax error"}})

    with (scripted(Reply(200, CREDENTIALS)) as minter, serving(s3) as storage,
          serving(refuse_once_streaming) as service):
        tasks = Tasks(local_stack, settings_for(
            local_stack, work_root, minter_url=minter.url, query_url=service.url,
            s3_endpoint_url=storage.url))
        started = time.monotonic()
        result = tasks.run(_queries_task(tasks, {"bad": "select nothing"}))
        elapsed = time.monotonic() - started

        assert s3.hung_up.wait(WAIT)  # the fetch stopped reading and let go of the connection
    assert result.error is not None
    assert (result.error.type, result.error.retryable) == ("Platform.QueryFailed", False)
    assert "bad" in result.error.message
    assert elapsed < WAIT / 2
    assert list((work_root / "downloads").iterdir()) == []  # the partial download is gone


def test_the_deadline_bounds_a_step_that_never_answers(local_stack: LocalStack,
                                                       work_root: Path) -> None:
    with scripted(Reply(hang=True)) as service:
        tasks = Tasks(local_stack, settings_for(local_stack, work_root, query_url=service.url))
        payload = _queries_task(tasks, {"slow": "select 1"})
        budget_ms = 1500
        started = time.monotonic()
        result = tasks.pipeline.run(payload, InvokeContext(
            remaining_ms=lambda: CLEANUP_MARGIN_MS + budget_ms - _elapsed_ms(started)))
        elapsed = time.monotonic() - started

    assert result.error is not None
    assert (result.error.type, result.error.retryable) == ("Platform.QueryFailed", True)
    assert budget_ms / 1000 <= elapsed < budget_ms / 1000 + 3
    assert result.timings_ms["queries"] >= budget_ms - 100


def _elapsed_ms(since: float) -> int:
    return int((time.monotonic() - since) * 1000)


@pytest.mark.parametrize("failing", ["query", "write credentials", "fetch"])
def test_an_attempt_leaves_no_thread_socket_or_file(local_stack: LocalStack, work_root: Path,
                                                   failing: str) -> None:
    s3 = SlowS3()

    def query(handler: Request) -> None:
        if failing == "query":
            assert s3.streaming.wait(WAIT)
            _json(handler, 400, {"error": {"message": "no"}})
        else:
            _json(handler, 200, ROWS)

    def mint(handler: Request) -> None:
        if failing == "write credentials" and json.loads(handler.body)["access"] == "write":
            _json(handler, 403, {"error": {"message": "no write access"}})
        else:
            _json(handler, 200, CREDENTIALS)

    with serving(mint) as minter, serving(s3) as storage, serving(query) as service:
        tasks = Tasks(local_stack, settings_for(
            local_stack, work_root, minter_url=minter.url, query_url=service.url,
            s3_endpoint_url=storage.url if failing != "fetch" else "http://127.0.0.1:9"))
        first = tasks.run(_queries_task(tasks, {"q": "select 1"}))  # the pools' connections
        threads, files = _runner_threads(), _open_files()
        again = tasks.run(_queries_task(tasks, {"q": "select 1"}))

        assert (first.status, again.status) == ("failed", "failed")
        assert _runner_threads() == threads
        assert not [t for t in threading.enumerate() if t.name.startswith("udf-step")]
        assert _sockets_to(storage.url) == 0
        assert _open_files() == files
    assert list((work_root / "downloads").glob("*")) == []


def _runner_threads() -> int:
    """Threads other than the stand-in servers' (one per connection they hold)."""
    return sum(not t.name.endswith("(process_request_thread)") for t in threading.enumerate())


def test_socket_counting_sees_a_connection() -> None:
    with serving(lambda request: _json(request, 200, {})) as server:
        assert _sockets_to(server.url) == 0
        with socket.create_connection(("127.0.0.1", server.server_address[1])) as connection:
            assert connection.fileno() >= 0
            assert _sockets_to(server.url) == 1
