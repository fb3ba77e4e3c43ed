"""The owner of a loopback connection's other end, read from /proc/net/tcp."""

from __future__ import annotations

import os
import socket

import pytest

from runner.runtime_api.peers import peer_uid


@pytest.mark.parametrize(("family", "host"), [(socket.AF_INET, "127.0.0.1"),
                                              (socket.AF_INET6, "::1")])
def test_the_peer_of_a_loopback_connection_is_this_uid(family: int, host: str) -> None:
    with socket.socket(family) as server:
        try:
            server.bind((host, 0))
        except OSError:
            pytest.skip(f"no {host} here")
        server.listen()
        with socket.create_connection(server.getsockname()[:2]) as client:
            accepted, _ = server.accept()
            with accepted:
                assert peer_uid(accepted) == os.getuid()
            client.close()


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
