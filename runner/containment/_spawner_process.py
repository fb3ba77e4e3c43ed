"""The spawner process: starts each bundle's runtime for the runner, so that the runner itself
never forks (runner.containment.spawner says why).

Run as a script by a fresh interpreter (`python -I -S`: no site packages, no environment, none
of the runner's memory), with the standard library only: `seccomp.py` and `keyrings.py`, which
import nothing else, are loaded from their files beside this one rather than through the
`runner` package. It makes itself non-dumpable, holds no secret (each request brings the child's
environment), and ends when the runner's end of its socket closes.

One request per message on the socket (SOCK_SEQPACKET), JSON, with the descriptors it needs
attached (SCM_RIGHTS); one reply each:

- `spawn`: start the child as the uid and gid named (`subprocess`, with the confinement applied
  between fork and exec, exactly as the runner used to in its own child) on the descriptors
  sent (stdout, stderr and optionally Lambda's telemetry pipe, whose number in the child goes
  into the variable `fd_variable`); reply `{"pid"}` with a pidfd for it (opened before
  anything could reap it), or `{"errno", "strerror"}` when it could not start.
- `wait`: wait for a child started here to exit, and reply `{"returncode"}` (negative: the
  signal, as `subprocess` reports it).
"""

from __future__ import annotations

import array
import ctypes
import importlib.util
import json
import os
import resource
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["MAX_FDS", "MAX_MESSAGE", "Spawner", "confinement", "main"]

#: Larger than any request: the child's environment is bounded well below (runner.models).
MAX_MESSAGE = 256 * 1024
#: Descriptors a request may carry: stdout, stderr, the telemetry pipe.
MAX_FDS = 3
_PR_SET_DUMPABLE = 4


def _load(name: str) -> ModuleType:
    """A stdlib-only module beside this file, loaded from its file."""
    spec = importlib.util.spec_from_file_location(
        f"udf_spawner_{name}", Path(__file__).resolve().with_name(f"{name}.py"))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {name}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def confinement(request: dict[str, Any]) -> Callable[[], None] | None:
    """What the child does between fork and exec: its resource limits, then (when confined) a
    fresh session keyring, no_new_privs and the filter. Prepared here, so that the child
    makes only C calls (setrlimit, keyctl, prctl): no imports, no locks."""
    limits = [(int(res), int(value)) for res, value in request["rlimits"]]
    installer = (_seccomp.Installer(bytes.fromhex(request["filter"]))
                 if request["filter"] is not None else None)
    clear_keyrings = bool(request["clear_keyrings"])
    if not limits and installer is None:
        return None

    def apply() -> None:
        for res, value in limits:
            resource.setrlimit(res, (value, value))
        if installer is not None:
            _keyrings.fresh_session(clear_uid=clear_keyrings)
            installer.install()

    return apply


class Spawner:
    """The loop: requests in, replies out, and the children started here."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def serve(self) -> None:
        while (request := self._receive()) is not None:
            message, fds = request
            try:
                reply, passed = self._handle(message, fds)
            finally:
                for fd in fds:
                    os.close(fd)  # the child has its own copies
            try:
                self._send(reply, passed)
            finally:
                for fd in passed:
                    os.close(fd)

    def _receive(self) -> tuple[bytes, list[int]] | None:
        message, ancillary, flags, _ = self._sock.recvmsg(
            MAX_MESSAGE, socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize))
        fds = array.array("i")
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
        if not message:
            return None  # the runner's end closed
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            message = b""  # answered as a bad request
        return message, list(fds)

    def _send(self, reply: dict[str, Any], fds: list[int]) -> None:
        ancillary = ([(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
                     if fds else [])
        self._sock.sendmsg([json.dumps(reply).encode()], ancillary)

    def _handle(self, message: bytes, fds: list[int]) -> tuple[dict[str, Any], list[int]]:
        try:
            request = json.loads(message)
            if request["op"] == "spawn":
                return self._spawn(request, fds)
            if request["op"] == "wait":
                return {"returncode": self._children.pop(request["pid"]).wait()}, []
        except (ValueError, KeyError, TypeError) as e:
            return {"errno": 22, "strerror": f"bad request to the spawner: {e!r}"}, []
        return {"errno": 22, "strerror": "unknown request to the spawner"}, []

    def _spawn(self, request: dict[str, Any],
               fds: list[int]) -> tuple[dict[str, Any], list[int]]:
        stdout, stderr, *passed = fds
        env = dict(request["env"])
        if passed:
            env[request["fd_variable"]] = str(passed[0])
        # Exactly the uid and gid the runner names: another than this process's (the sandbox
        # uid of a root runner) comes with no supplementary groups.
        switch = (request["user"], request["group"]) != (os.getuid(), os.getgid())
        try:
            child = subprocess.Popen(
                request["argv"], cwd=request["cwd"], env=env,
                stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, close_fds=True,
                pass_fds=passed, start_new_session=True, umask=request["umask"],
                user=request["user"] if switch else None,
                group=request["group"] if switch else None,
                extra_groups=[] if switch else None,
                preexec_fn=confinement(request),  # noqa: PLW1509 - C calls only, see above
            )
        except OSError as e:
            return {"errno": e.errno, "strerror": e.strerror}, []
        self._children[child.pid] = child
        return {"pid": child.pid}, [os.pidfd_open(child.pid)]


def main() -> None:
    ctypes.CDLL(None).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    fd = int(sys.argv[1])
    os.set_inheritable(fd, False)  # (close_fds would keep it from the children anyway)
    with socket.socket(fileno=fd) as sock:
        Spawner(sock).serve()


_seccomp = _load("seccomp")
_keyrings = _load("keyrings")

if __name__ == "__main__":
    main()
