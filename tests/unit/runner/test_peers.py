"""The owner of a loopback connection's other end, asked of sock_diag or read from
/proc/net/tcp."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from runner.runtime_api import peers
from runner.runtime_api.peers import peer_uid


@pytest.fixture(params=[(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")],
                ids=["ipv4", "ipv6"])
def accepted(request: pytest.FixtureRequest) -> Iterator[socket.socket]:
    """The server's end of a loopback connection."""
    family, host = request.param
    with socket.socket(family) as server:
        try:
            server.bind((host, 0))
        except OSError:
            pytest.skip(f"no {host} here")
        server.listen()
        with socket.create_connection(server.getsockname()[:2]):
            conn, _ = server.accept()
            with conn:
                yield conn


def test_the_peer_of_a_loopback_connection_is_this_uid(accepted: socket.socket) -> None:
    assert peer_uid(accepted) == os.getuid()


def test_sock_diag_and_the_proc_table_name_the_same_owner(accepted: socket.socket) -> None:
    remote, local = accepted.getpeername(), accepted.getsockname()

    assert peers._diag_owner(accepted.family, remote, local) == os.geteuid()
    assert peers._listed_owner(accepted.family, remote, local) == os.geteuid()


def test_only_the_exact_socket_counts() -> None:
    """A lookup from the listening port to where no connection goes finds the listener, which
    is not a peer."""
    with socket.create_server(("127.0.0.1", 0)) as server, \
            socket.create_connection(server.getsockname()) as client:
        conn, _ = server.accept()
        with conn:
            ours, theirs = conn.getsockname(), conn.getpeername()
            nowhere = ("127.0.0.1", 1)
            for find in (peers._diag_owner, peers._listed_owner):
                assert find(socket.AF_INET, theirs, ours) == os.geteuid()
                assert find(socket.AF_INET, ours, nowhere) is None
        client.close()


def test_without_sock_diag_the_proc_table_answers(accepted: socket.socket,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers, "_sock_diag_works", lambda: False)

    assert peer_uid(accepted) == os.getuid()


def test_sock_diag_works_here() -> None:
    """Where it does not (an outer sandbox refusing netlink), every lookup reads the table."""
    assert peers._sock_diag_works()


def test_a_peer_that_is_gone_has_no_owner() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        client.close()  # a reset: the kernel forgets the socket at once
        with accepted:
            assert peer_uid(accepted) is None
