"""Who is on the other end of a loopback TCP connection: the uid that owns the peer's socket.

Loopback listeners are visible to every process (/proc/net/tcp), so on a machine that runs
several runners at once one bundle could call `next` on another attempt's Runtime API, take its
event and post a forged answer. The server therefore serves a connection only when the socket
at its other end belongs to the attempt's own uid. The kernel lists every TCP socket of the
network namespace with its owner in /proc/net/tcp (tcp6 for IPv6): the peer's socket is the
row whose local address is the connection's remote one and whose remote address is ours.
"""

from __future__ import annotations

import socket
from pathlib import Path

PROC_NET = Path("/proc/net")

__all__ = ["PROC_NET", "peer_uid"]


def peer_uid(conn: socket.socket) -> int | None:
    """The uid owning the socket at the other end of the accepted connection `conn`, or None
    when the kernel no longer lists it (it closed already) or the address is not IPv4/IPv6."""
    try:
        local, remote = conn.getsockname(), conn.getpeername()
    except OSError:  # reset already: not connected any more
        return None
    table = {socket.AF_INET: "tcp", socket.AF_INET6: "tcp6"}.get(conn.family)
    if table is None:
        return None
    wanted = (_hex_address(conn.family, remote), _hex_address(conn.family, local))
    for line in (PROC_NET / table).read_text().splitlines()[1:]:
        fields = line.split()
        if (fields[1], fields[2]) == wanted:
            return int(fields[7])
    return None


def _hex_address(family: int, address: tuple[str, int] | tuple[str, int, int, int]) -> str:
    """An address as /proc/net/tcp writes it: the IP in host-order 32-bit words, in hex, then
    the port in hex."""
    packed = socket.inet_pton(family, address[0])
    words = [packed[i:i + 4][::-1] for i in range(0, len(packed), 4)]  # little-endian hosts
    return f"{b''.join(words).hex().upper()}:{address[1]:04X}"
