"""The spawner process: starts each confined child for the runner, so that the runner itself
never forks (runner.containment.spawner says why).

Run by a fresh interpreter (`python -I -S`: no site packages, no environment, none of the
runner's memory), on the standard library alone, and only what it needs: its start is paid as
each environment's first task begins. It and `keyrings.py` (ctypes only) are imported as
top-level modules from their directory, put last on `sys.path` (`LAUNCH`), rather than through
the `runner` package, whose imports are the runner's: so their cached bytecode is used, where a
script is compiled again at every start. It makes itself non-dumpable, holds no secret (each
request brings the child's environment), and ends when the runner's end of its socket closes.

One request per message on the socket (SOCK_SEQPACKET), a `marshal`led dict (the runner and
the spawner are the same interpreter, and nothing else holds the socket), with the descriptors
it needs attached (SCM_RIGHTS); one reply each:

- `spawn`: start the child as the uid and gid named (`subprocess`, with the confinement applied
  between fork and exec) on the descriptors sent (stdout, stderr and optionally Lambda's
  telemetry pipe, whose number in the child goes into the variable `fd_variable`); reply
  `{"pid"}` with a pidfd for it (opened before anything could reap it), or
  `{"errno", "strerror"}` when it could not start.
- `wait`: wait for a child started here to exit, and reply `{"returncode"}` (negative: the
  signal, as `subprocess` reports it).
"""

from __future__ import annotations

import ctypes
import importlib
import marshal
import os
import resource
import socket
import subprocess
import sys

# `typing` is not imported for its flag: its import is a tenth of this process's start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["LAUNCH", "MAX_FDS", "MAX_MESSAGE", "Installer", "Spawner", "confinement", "main"]

#: What `python -I -S -c` runs, with this file's directory and the socket's descriptor as
#: arguments: this module imported from its directory, then `main`.
LAUNCH = ("import sys; sys.path.append(sys.argv[1]); "
          "import _spawner_process; _spawner_process.main()")

#: Larger than any request: the child's environment is bounded well below (runner.models).
MAX_MESSAGE = 256 * 1024
#: Descriptors a request may carry: stdout, stderr, the telemetry pipe.
MAX_FDS = 3
_INT = 4  # bytes of a descriptor in SCM_RIGHTS
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.restype = ctypes.c_int
_libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong,
                        ctypes.c_ulong)


class Installer:
    """A system-call filter (runner.containment.seccomp) made ready before the fork; `install()`
    runs in the child between fork and exec and makes only C calls (prctl), as code there
    must."""

    def __init__(self, code: bytes) -> None:
        self._buffer = ctypes.create_string_buffer(code, len(code))
        self._fprog = _SockFprog(len(code) // 8, ctypes.addressof(self._buffer))
        self._fprog_address = ctypes.addressof(self._fprog)

    def install(self) -> None:
        """Set no_new_privs, then the filter; raises OSError if either is refused."""
        if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(_PR_SET_NO_NEW_PRIVS)")
        if _libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, self._fprog_address, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(_PR_SET_SECCOMP)")


def confinement(request: dict[str, Any],
                fresh_session: Callable[..., None]) -> Callable[[], None] | None:
    """What the child does between fork and exec: its resource limits, then (when confined) a
    fresh session keyring (`fresh_session`, runner.containment.keyrings), no_new_privs and the
    filter. Prepared here, so that the child makes only C calls (setrlimit, keyctl, prctl): no
    imports, no locks."""
    limits = [(int(res), int(value)) for res, value in request["rlimits"]]
    installer = Installer(request["filter"]) if request["filter"] is not None else None
    clear_keyrings = bool(request["clear_keyrings"])
    if not limits and installer is None:
        return None

    def apply() -> None:
        for res, value in limits:
            resource.setrlimit(res, (value, value))
        if installer is not None:
            fresh_session(clear_uid=clear_keyrings)
            installer.install()

    return apply


class Spawner:
    """The loop: requests in, replies out, and the children started here."""

    def __init__(self, sock: socket.socket, fresh_session: Callable[..., None]) -> None:
        self._sock = sock
        self._fresh_session = fresh_session
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
        message, ancillary, flags, _ = self._sock.recvmsg(MAX_MESSAGE,
                                                         socket.CMSG_SPACE(MAX_FDS * _INT))
        fds = [int.from_bytes(data[at:at + _INT], sys.byteorder)
               for level, kind, data in ancillary
               if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
               for at in range(0, len(data) - len(data) % _INT, _INT)]
        if not message:
            return None  # the runner's end closed
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            message = b""  # answered as a bad request
        return message, fds

    def _send(self, reply: dict[str, Any], fds: list[int]) -> None:
        ancillary = ([(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                       b"".join(fd.to_bytes(_INT, sys.byteorder) for fd in fds))]
                     if fds else [])
        self._sock.sendmsg([marshal.dumps(reply)], ancillary)

    def _handle(self, message: bytes, fds: list[int]) -> tuple[dict[str, Any], list[int]]:
        try:
            request = marshal.loads(message)  # noqa: S302 - from the runner alone (a socket pair)
            if request["op"] == "spawn":
                return self._spawn(request, fds)
            if request["op"] == "wait":
                return {"returncode": self._children.pop(request["pid"]).wait()}, []
        except (EOFError, ValueError, KeyError, TypeError, IndexError) as e:
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
                preexec_fn=confinement(request, self._fresh_session),  # noqa: PLW1509 - C calls only
            )
        except OSError as e:
            return {"errno": e.errno, "strerror": e.strerror}, []
        self._children[child.pid] = child
        return {"pid": child.pid}, [os.pidfd_open(child.pid)]


def _fresh_session() -> Callable[..., None]:
    """`keyrings.fresh_session`, imported from the directory `LAUNCH` put on `sys.path`."""
    fresh_session: Callable[..., None] = importlib.import_module("keyrings").fresh_session
    return fresh_session


def main() -> None:
    """Serve the runner on the socket whose descriptor is `sys.argv[2]` (see `LAUNCH`)."""
    _libc.prctl(_PR_SET_DUMPABLE, 0, None, 0, 0)
    fd = int(sys.argv[2])
    os.set_inheritable(fd, False)  # (close_fds would keep it from the children anyway)
    with socket.socket(fileno=fd) as sock:
        Spawner(sock, _fresh_session()).serve()
