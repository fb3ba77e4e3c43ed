"""The floors: a runtime spawned and served one invocation with nothing else around it.

`serve_one` is the least a Runtime API server can do: a listening socket, the child spawned
with the plain `subprocess` path (vfork: no session, no uid switch, no limits), one `next`
answered with the event and the headers the clients require, the response read into a
preallocated buffer with `recv_into`, a 202, then the child stopped (SIGTERM) and reaped.
No HTTP library, no threads, no state machine: a raw loopback socket.
"""

from __future__ import annotations

import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_HEADERS_END = b"\r\n\r\n"
_NEXT_REPLY = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
               b"Lambda-Runtime-Aws-Request-Id: 8476a536-e9f4-11e8-9739-2dfe598c3fcd\r\n"
               b"Lambda-Runtime-Deadline-Ms: %d\r\n"
               b"Lambda-Runtime-Invoked-Function-Arn: "
               b"arn:aws:lambda:us-east-1:000000000000:function:udf\r\n"
               b"Content-Length: %d\r\n\r\n")
_ACCEPTED = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n"
_ACCEPTED_BODY = b'{"status":"OK"}\n'
#: Longest wait for the child's next request: a child that died is an error, not a hang.
TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Served:
    """One invocation served by the floor."""

    seconds: float  # from spawning the child to reaping it
    response: bytes
    stdout: bytes


class _Connection:
    """A client connection, read straight from the socket into buffers of our own (no file
    object, no parsing beyond the content length)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = bytearray()

    def request(self) -> tuple[bytes, bytearray] | None:
        """(request line and headers, body), or None when the client closed the connection."""
        while _HEADERS_END not in self.pending:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.pending += chunk
        end = self.pending.index(_HEADERS_END) + len(_HEADERS_END)
        head = bytes(self.pending[:end])
        del self.pending[:end]
        if b"expect: 100-continue" in head.lower():
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        length = _content_length(head)
        body = bytearray(length)
        view = memoryview(body)
        have = min(length, len(self.pending))
        view[:have] = self.pending[:have]
        del self.pending[:have]
        while have < length:
            got = self.sock.recv_into(view[have:])
            if not got:
                return None
            have += got
        return head, body


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def serve_one(argv: Sequence[str], env: Mapping[str, str], cwd: Path, event: bytes, *,
              stop: bool = True) -> Served:
    """Spawn `argv`, serve it one invocation of `event`, stop it (unless it exits by itself:
    `stop=False`) and reap it."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        started = time.perf_counter()
        child = subprocess.Popen(
            list(argv), cwd=cwd, env={**env, "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}"},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            response = _one_invocation(listener, event)
            if stop:
                child.send_signal(signal.SIGTERM)
            stdout = child.communicate()[0]
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        seconds = time.perf_counter() - started
    return Served(seconds, bytes(response), stdout)


def _one_invocation(listener: socket.socket, event: bytes) -> bytearray:
    """Answer `next` with `event` and return the body of the response the child posts. Some
    clients (the Node one) open a new connection per request, so every connection is watched."""
    watched = selectors.DefaultSelector()
    watched.register(listener, selectors.EVENT_READ)
    connections: list[_Connection] = []
    try:
        while True:
            ready = watched.select(TIMEOUT_SECONDS)
            if not ready:
                raise RuntimeError(f"the child sent nothing for {TIMEOUT_SECONDS:.0f} s")
            for key, _ in ready:
                if key.fileobj is listener:
                    sock, _ = listener.accept()
                    sock.settimeout(TIMEOUT_SECONDS)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    connections.append(_Connection(sock))
                    watched.register(sock, selectors.EVENT_READ, connections[-1])
                    continue
                connection: _Connection = key.data
                request = connection.request()
                if request is None:
                    watched.unregister(connection.sock)
                    continue
                body = _answer(connection, *request, event)
                if body is not None:
                    return body
    finally:
        watched.close()
        for connection in connections:
            connection.sock.close()


def _answer(connection: _Connection, head: bytes, body: bytearray,
            event: bytes) -> bytearray | None:
    """Reply to one request; the response's body once it is the response."""
    line = head.split(b"\r\n", 1)[0]
    if line.startswith(b"GET ") and b"/invocation/next " in line:
        deadline = int(time.time() * 1000) + 60_000
        connection.sock.sendall(_NEXT_REPLY % (deadline, len(event)) + event)
        return None
    if line.startswith(b"POST ") and line.endswith(b"/response HTTP/1.1"):
        connection.sock.sendall(_ACCEPTED + _ACCEPTED_BODY)
        return body
    raise RuntimeError(f"the floor server got {line!r}")
