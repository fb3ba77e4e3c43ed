"""The embedded S3 (with the IAM and STS it needs) as a child process.

`EmbeddedS3.spawn()` starts `devstack._moto_server` and returns at once, so the caller can do
other work while moto imports; `ready()` then waits for the child's one-line announcement (or
its death) and returns the endpoint and the admin credentials. Closing the child's stdin is how
it is told to stop, so it also stops if this process dies.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from types import TracebackType
from typing import IO, TYPE_CHECKING, Self

if TYPE_CHECKING:
    from devstack.access import AdminCredentials

DEFAULT_STARTUP_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class S3Endpoint:
    """Where the embedded S3 listens, and who administers it."""

    url: str
    admin: AdminCredentials


class EmbeddedS3:
    """The moto child process."""

    def __init__(self, process: subprocess.Popen[bytes], stderr: IO[bytes]) -> None:
        self._process = process
        self._stderr = stderr
        self._endpoint: S3Endpoint | None = None

    @classmethod
    def spawn(cls, port: int = 0) -> EmbeddedS3:
        """Start the child (on `port`, or one the OS picks); return without waiting for it."""
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}  # auth on from the start
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack._moto_server", str(port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env,
        )
        return cls(process, stderr)

    def ready(self, timeout: float = DEFAULT_STARTUP_TIMEOUT_SECONDS) -> S3Endpoint:
        """Wait for the child's announcement; StackError if it dies or stays silent."""
        if self._endpoint is None:
            self._endpoint = self._read_announcement(timeout)
        return self._endpoint

    def close(self) -> None:
        """Stop the child and reap it. It holds nothing worth a graceful exit (moto's state is
        in memory and dies with it), and shutting werkzeug and moto down cleanly took most of
        half a second, so it is killed; its stdin is closed as well, for form."""
        if self._process.stdin is not None and not self._process.stdin.closed:
            self._process.stdin.close()
        self._process.kill()
        self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._stderr.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _read_announcement(self, timeout: float) -> S3Endpoint:
        # Imported here: `devstack.launch` spawns the child before anything heavy is imported,
        # and the stack's access brings pydantic.
        from devstack.access import AdminCredentials, StackError  # noqa: PLC0415

        stdout = self._process.stdout
        assert stdout is not None  # noqa: S101 - Popen(stdout=PIPE) always sets it
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([stdout], [], [], remaining)[0]:
                raise StackError(f"the embedded S3 did not start in {timeout:g} s"
                                      f"{self._diagnostics()}")
            chunk = os.read(stdout.fileno(), 4096)
            if not chunk:
                raise StackError(f"the embedded S3 exited during startup{self._diagnostics()}")
            line += chunk
        announced = json.loads(line)
        admin = AdminCredentials(announced["access_key_id"], announced["secret_access_key"],
                                 announced["admin_arn"])
        return S3Endpoint(f"http://127.0.0.1:{announced['port']}", admin)

    def _diagnostics(self) -> str:
        self._stderr.seek(0)
        tail = self._stderr.read()[-4000:].decode(errors="replace").strip()
        return f":\n{tail}" if tail else ""
