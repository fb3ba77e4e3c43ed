"""The Lambda service's side of one execution environment, for running the built function:
a Runtime API that hands the runtime one queued invocation after another and collects the
answers. (The runner's own emulation serves exactly one invocation to a bundle; Lambda keeps an
environment warm, so this host serves as many as the test queues.)"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ARN = "arn:aws:lambda:us-east-1:123456789012:function:udf-runner"


@dataclass(frozen=True)
class Answer:
    """What the function posted for one invocation."""

    kind: str  # "response" or "error"
    body: Any


class LambdaHost(ThreadingHTTPServer):
    """A Runtime API on loopback; `invoke` queues an event and waits for its answer."""

    daemon_threads = True

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, bytes, int]] = queue.Queue()
        self.answers: dict[str, queue.Queue[Answer]] = {}
        self.init_errors: queue.Queue[Any] = queue.Queue()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def invoke(self, event: Any, timeout_s: float) -> Answer:
        """Run one invocation with Lambda's deadline `timeout_s` from now; its answer."""
        request_id = str(uuid.uuid4())
        answer: queue.Queue[Answer] = queue.Queue()
        self.answers[request_id] = answer
        deadline_ms = int((time.time() + timeout_s) * 1000)
        self.events.put((request_id, json.dumps(event).encode(), deadline_ms))
        return answer.get(timeout=timeout_s + 30)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def host(self) -> LambdaHost:
        assert isinstance(self.server, LambdaHost)
        return self.server

    def do_GET(self) -> None:
        request_id, body, deadline_ms = self.host.events.get()
        self._reply(200, body, {
            "Lambda-Runtime-Aws-Request-Id": request_id,
            "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": ARN,
            "Lambda-Runtime-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0",
        })

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"null")
        parts = self.path.strip("/").split("/")  # 2018-06-01/runtime/invocation/<id>/<kind>
        if parts[-2:] == ["init", "error"]:
            self.host.init_errors.put(body)
        else:
            self.host.answers[parts[-2]].put(Answer(parts[-1], body))
        self._reply(202, b'{"status":"OK"}', {})

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve() -> tuple[LambdaHost, threading.Thread]:
    """A host serving in a background thread."""
    host = LambdaHost()
    thread = threading.Thread(target=host.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    return host, thread
