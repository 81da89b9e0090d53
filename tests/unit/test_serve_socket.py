"""The listening socket of ``authgate serve``, and its process's garbage collector."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

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


def test_the_servers_long_lived_objects_are_out_of_the_collectors_sight(tmp_path: Path) -> None:
    """``authgate serve``'s app factory freezes what exists once the app is built (modules,
    classes, the app): a full collection then walks only what the caches hold."""
    code = ("import gc; from authgate.cli.serve import server_app; server_app(); "
            "print(gc.get_freeze_count())")
    env = {**os.environ, "AUTHGATE_DATABASE_URL": f"sqlite:///{tmp_path}/f.db"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert int(out.split()[-1]) > 10_000
