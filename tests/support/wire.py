"""What a runtime client and a Runtime API say to each other, byte for byte.

`RecordingProxy` sits on loopback between a bundle's runtime and the Runtime API it was given,
and keeps every byte each side sent, per connection. The runner sets `AWS_LAMBDA_RUNTIME_API`
itself, so the bundle is wrapped (`wrap_bundle`): its `bootstrap` becomes a shell script that
tells the proxy where the real API is and then runs the real bootstrap pointed at the proxy.
"""

from __future__ import annotations

import re
import shutil
import socket
import threading
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

#: The wrapper's own variables, passed to the bundle as the task's env.
PROXY_ADDRESS_VAR = "WIRE_PROXY_ADDRESS"
UPSTREAM_FILE_VAR = "WIRE_UPSTREAM_FILE"
_WRAPPER = f"""#!/bin/sh
# Records the Runtime API address the runner gave, then talks to it through the test's proxy.
printf '%s' "$AWS_LAMBDA_RUNTIME_API" > "${UPSTREAM_FILE_VAR}"
AWS_LAMBDA_RUNTIME_API="${PROXY_ADDRESS_VAR}" exec "$LAMBDA_TASK_ROOT/real-bootstrap" "$@"
"""
_HEAD_END = b"\r\n\r\n"


@dataclass(frozen=True)
class Message:
    """One HTTP message: its start line, its header lines as sent, and what followed them."""

    start: str
    headers: list[tuple[str, str]]
    rest: bytes

    def values(self, name: str) -> list[str]:
        """Every value of the header `name` (compared case-insensitively)."""
        return [value for key, value in self.headers if key.lower() == name.lower()]


def parse_head(raw: bytes) -> Message:
    """The first message head in `raw` (the body, chunked or not, stays in `rest`)."""
    head, _, rest = raw.partition(_HEAD_END)
    start, *lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines:
        name, _, value = line.partition(":")
        headers.append((name, value.strip()))
    return Message(start, headers, rest)


def requests_in(raw: bytes) -> list[Message]:
    """The request heads a client sent on one connection, in order."""
    starts = [m.start() for m in re.finditer(rb"(?m)^(GET|POST|PUT) /", raw)]
    ends = [*starts[1:], len(raw)] if starts else []
    return [parse_head(raw[a:b]) for a, b in zip(starts, ends, strict=True)]


def statuses_in(raw: bytes) -> list[int]:
    """The status codes a server answered with on one connection, in order (the runner gives
    every reply a Content-Length)."""
    statuses = []
    while raw:
        reply = parse_head(raw)
        statuses.append(int(reply.start.split(" ")[1]))
        raw = reply.rest[int((reply.values("Content-Length") or ["0"])[0]):]
    return statuses


@dataclass
class Exchange:
    """One connection: what the client sent and what the server answered."""

    sent: bytearray = field(default_factory=bytearray)
    answered: bytearray = field(default_factory=bytearray)


class RecordingProxy:
    """A TCP proxy on 127.0.0.1 to the address written in `upstream_file` by the wrapper."""

    def __init__(self, upstream_file: Path) -> None:
        self.upstream_file = upstream_file
        self.exchanges: list[Exchange] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    @property
    def address(self) -> str:
        host, port = self._listener.getsockname()
        return f"{host}:{port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            host, _, port = self.upstream_file.read_text().rpartition(":")
            try:
                upstream = socket.create_connection((host, int(port)))
            except OSError:  # the runner has stopped its server: so would the real API be gone
                client.close()
                continue
            exchange = Exchange()
            with self._lock:
                self.exchanges.append(exchange)
                self._sockets += [client, upstream]
            for source, sink, record in ((client, upstream, exchange.sent),
                                         (upstream, client, exchange.answered)):
                pump = threading.Thread(target=_pump, args=(source, sink, record), daemon=True)
                pump.start()
                self._threads.append(pump)

    def close(self) -> None:
        """Stop accepting, then wait for every connection to end: once the runner has stopped
        the child and its own server, both ends are closed, and every byte is recorded."""
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._accepting.join()
        for pump in self._threads:
            pump.join(timeout=30)
        for sock in self._sockets:
            sock.close()

    def request(self, path_suffix: str) -> tuple[Message, Exchange]:
        """The first request whose path ends with `path_suffix` (a runtime's second `next`,
        held, may follow), and its connection."""
        found = [(m, e) for e in self.exchanges for m in requests_in(bytes(e.sent))
                 if m.start.split(" ")[1].endswith(path_suffix)]
        assert found, f"no request for {path_suffix}"
        return found[0]


def _pump(source: socket.socket, sink: socket.socket, record: bytearray) -> None:
    with suppress(OSError):
        while data := source.recv(65536):
            record += data
            sink.sendall(data)
    with suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def wrap_bundle(bundle: Path, dest: Path) -> Path:
    """A copy of the bundle folder whose `bootstrap` goes through the proxy."""
    shutil.copytree(bundle, dest)
    (dest / "bootstrap").rename(dest / "real-bootstrap")
    wrapper = dest / "bootstrap"
    wrapper.write_text(_WRAPPER)
    wrapper.chmod(0o755)
    return dest
