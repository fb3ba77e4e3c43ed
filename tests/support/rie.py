"""AWS's Runtime Interface Emulator, run on the host as the reference for the runner's emulation.

The RIE is what `sam local invoke` and Lambda's container images run: given a bootstrap on its
command line it starts it on the first invoke, serves it the Runtime API, and answers each
`POST /2015-03-31/functions/function/invocations` with what the runtime posted. It forwards its
whole environment to the runtime, so it is started from an explicit one (`env -i` style). One
process serves one test case: after a runtime dies or times out the RIE resets, and two
concurrent invokes crash it.
"""

from __future__ import annotations

import base64
import http.client
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import toolchains

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
_START_SECONDS = 10.0


@dataclass(frozen=True)
class Answer:
    """What a caller of the RIE's invoke endpoint got."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Emulator:
    """A running RIE, by the port of its invoke endpoint."""

    port: int

    def invoke(self, event: bytes, *, trace_id: str | None = None,
               client_context: str | None = None, timeout_s: float = 60) -> Answer:
        """Invoke once; `client_context` is the raw JSON (sent base64, as the Invoke API takes
        it)."""
        headers = {"Content-Type": "application/json"}
        if trace_id:
            headers["X-Amzn-Trace-Id"] = trace_id
        if client_context:
            headers["X-Amz-Client-Context"] = base64.b64encode(client_context.encode()).decode()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        try:
            conn.request("POST", INVOKE_PATH, body=event, headers=headers)
            reply = conn.getresponse()
            return Answer(reply.status, {k.lower(): v for k, v in reply.getheaders()},
                          reply.read())
        finally:
            conn.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    """Until the RIE accepts connections. It logs nothing when it starts listening, so the
    only sign is a connection that is accepted; each refused attempt is an immediate answer."""
    give_up = time.monotonic() + _START_SECONDS
    while process.poll() is None and time.monotonic() < give_up:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            time.sleep(0.01)  # the listener is not bound yet: nothing to wait on but time
            continue
        return
    raise RuntimeError(f"aws-lambda-rie did not start (exit status {process.poll()})")


@contextmanager
def running(command: Sequence[str], cwd: Path, env: Mapping[str, str], *,
            timeout_s: int) -> Iterator[Emulator]:
    """The RIE running `command` (the bootstrap and its arguments) in `cwd`, with exactly
    `env` (plus the RIE's own function timeout) for the runtime."""
    port = _free_port()
    argv = [str(toolchains.rie()), "--runtime-interface-emulator-address", f"127.0.0.1:{port}",
            "--runtime-api-address", f"127.0.0.1:{_free_port()}", *command]
    process = subprocess.Popen(
        argv, cwd=cwd, env={**env, "AWS_LAMBDA_FUNCTION_TIMEOUT": str(timeout_s)},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, process)
        yield Emulator(port)
    finally:
        # SIGTERM: the RIE stops its runtime (in a process group of its own) before it exits.
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
