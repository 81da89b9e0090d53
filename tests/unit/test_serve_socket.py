"""The listening socket of ``authgate serve``."""

from __future__ import annotations

import socket

import pytest

from authgate.cli.serve import bind

pytestmark = pytest.mark.fast


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_accepted_connections_send_without_waiting_for_an_ack(host: str) -> None:
    """TCP_NODELAY on every accepted connection, whatever event loop serves it: asyncio's
    (uvicorn without uvloop) does not set it on a socket made with proto 0, and a response
    written in two parts then waited for the client's delayed ACK, 40 ms a request."""
    try:
        listener = bind(host, 0)
    except SystemExit:
        pytest.skip(f"no {host} here")
    with listener, socket.create_connection(listener.getsockname()[:2]):
        accepted, _ = listener.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
