"""Who is on the other end of a loopback TCP connection: the uid that owns the peer's socket.

Loopback listeners are visible to every process (/proc/net/tcp), so on a machine that runs
several runners at once one bundle could call `next` on another attempt's Runtime API, take its
event and post a forged answer. The server therefore serves a connection only when the socket
at its other end belongs to the attempt's own uid. The peer's socket is the one whose local
address is the connection's remote one and whose remote address is ours; the kernel records its
owner, and tells it two ways:

- sock_diag (a netlink socket): one exact lookup of a TCP socket by its addresses and ports,
  answered from the kernel's hash of connections;
- /proc/net/tcp (tcp6 for IPv6): every socket of the network namespace, one per line. Reading it
  walks the whole hash of established connections, whatever is in it: 5 ms per read on a
  machine with 23 GB of memory (262,144 buckets), paid on every connection the child opens.

The lookup asks sock_diag, and reads /proc/net/tcp where netlink is refused (some sandboxes
refuse AF_NETLINK sockets). Which one works is found once per process, by looking up a
connection of its own (`_sock_diag_works`): a kernel without the TCP diag module answers
"not found" for every socket, as it does for a socket that closed.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import struct
from pathlib import Path

PROC_NET = Path("/proc/net")

__all__ = ["PROC_NET", "peer_uid"]

# <linux/netlink.h>, <linux/sock_diag.h>, <linux/inet_diag.h>
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_NO_COOKIE = 0xFFFFFFFF
_ALL_STATES = 0xFFFFFFFF
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_REQUEST = struct.Struct("=BBBBI")  # inet_diag_req_v2: family, protocol, ext, pad, states
# inet_diag_sockid: ports and addresses in network order, then interface and cookie.
_SOCKID = struct.Struct(">HH16s16s")
_SOCKID_REST = struct.Struct("=III")
# inet_diag_msg: family, state, timer, retransmits, the sockid, expires, queues, uid, inode.
_MSG_SOCKID_AT = _HEADER.size + 4
_MSG_UID_AT = _MSG_SOCKID_AT + _SOCKID.size + _SOCKID_REST.size + 12
_REPLY_BYTES = 8192


def peer_uid(conn: socket.socket) -> int | None:
    """The uid owning the socket at the other end of the accepted connection `conn`, or None
    when the kernel no longer lists it (it closed already) or the address is not IPv4/IPv6."""
    try:
        local, remote = conn.getsockname(), conn.getpeername()
    except OSError:  # reset already: not connected any more
        return None
    if conn.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    if _sock_diag_works():
        try:
            return _diag_owner(conn.family, remote, local)
        except OSError:
            pass  # refused this time: the table still tells
    return _listed_owner(conn.family, remote, local)


def _diag_owner(family: int, source: tuple[str, int] | tuple[str, int, int, int],
                dest: tuple[str, int] | tuple[str, int, int, int]) -> int | None:
    """The owner of the TCP socket from `source` to `dest`, asked of sock_diag."""
    wanted = _SOCKID.pack(source[1], dest[1], _packed(family, source[0]),
                          _packed(family, dest[0]))
    body = (_REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, _ALL_STATES) + wanted
            + _SOCKID_REST.pack(0, _NO_COOKIE, _NO_COOKIE))
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                       _NETLINK_SOCK_DIAG) as netlink:
        netlink.sendto(_HEADER.pack(_HEADER.size + len(body), _SOCK_DIAG_BY_FAMILY,
                                    _NLM_F_REQUEST, 1, 0) + body, (0, 0))
        reply = netlink.recv(_REPLY_BYTES)
    kind = _HEADER.unpack_from(reply)[1]
    if kind == _NLMSG_ERROR:
        code = -struct.unpack_from("=i", reply, _HEADER.size)[0]
        if code == errno.ENOENT:
            return None  # no such socket
        raise OSError(code, "sock_diag")
    if kind != _SOCK_DIAG_BY_FAMILY or len(reply) < _MSG_UID_AT + 4:
        raise OSError(errno.EPROTO, "sock_diag: not the reply asked for")
    # The lookup falls back to a listening socket on the address: only the exact one counts.
    if reply[_MSG_SOCKID_AT:_MSG_SOCKID_AT + _SOCKID.size] != wanted:
        return None
    uid: int = struct.unpack_from("=I", reply, _MSG_UID_AT)[0]
    return uid


def _listed_owner(family: int, source: tuple[str, int] | tuple[str, int, int, int],
                  dest: tuple[str, int] | tuple[str, int, int, int]) -> int | None:
    """The owner of the TCP socket from `source` to `dest`, as /proc/net lists it."""
    table = "tcp" if family == socket.AF_INET else "tcp6"
    wanted = (_hex_address(family, source), _hex_address(family, dest))
    for line in (PROC_NET / table).read_text().splitlines()[1:]:
        fields = line.split()
        if (fields[1], fields[2]) == wanted:
            return int(fields[7])
    return None


@functools.cache
def _sock_diag_works() -> bool:
    """Whether sock_diag finds a connection of this process, with its owner."""
    # Plain sockets on numeric addresses: nothing here may need a name lookup, which imports
    # codecs and reads files a runner that dropped its privileges may no longer read.
    try:
        with socket.socket() as server, socket.socket() as client:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            client.connect(server.getsockname())
            accepted, _ = server.accept()
            with accepted:
                found = _diag_owner(socket.AF_INET, client.getsockname(),
                                    accepted.getsockname())
    except OSError:
        return False
    return found == os.geteuid()  # a new socket's owner


def _packed(family: int, host: str) -> bytes:
    """An address as sock_diag takes it: network order, in 16 bytes."""
    return socket.inet_pton(family, host).ljust(16, b"\0")


def _hex_address(family: int, address: tuple[str, int] | tuple[str, int, int, int]) -> str:
    """An address as /proc/net/tcp writes it: the IP in host-order 32-bit words, in hex, then
    the port in hex."""
    packed = socket.inet_pton(family, address[0])
    words = [packed[i:i + 4][::-1] for i in range(0, len(packed), 4)]  # little-endian hosts
    return f"{b''.join(words).hex().upper()}:{address[1]:04X}"
