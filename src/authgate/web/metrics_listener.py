"""``METRICS_ADDRESS``: ``/metrics`` on a listener of its own (e.g. ``127.0.0.1:9100``), so
the public port never serves it. A minimal HTTP/1.1 responder on asyncio streams: one
request per connection, ``GET /metrics`` only. With ``--workers N`` each worker takes the
first free port from the given one upwards (port, port+1, ...) and logs which."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Awaitable, Callable

from authgate.metrics import CONTENT_TYPE

log = logging.getLogger("authgate")
MAX_WORKER_PORTS = 64


def parse_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be host:port, such as 127.0.0.1:9100")
    return host.strip("[]") or "127.0.0.1", int(port)


class MetricsListener:
    def __init__(self, address: str, render: Callable[[], Awaitable[bytes]]) -> None:
        self.host, self.port = parse_address(address)
        self.render = render
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen; returns the port taken."""
        for port in range(self.port, self.port + MAX_WORKER_PORTS):
            try:
                self.server = await asyncio.start_server(self._serve, self.host, port)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            log.info("metrics on http://%s:%d/metrics", self.host, port)
            return port
        raise OSError(errno.EADDRINUSE, f"no free port from {self.port} for metrics")

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            method, _, rest = request.partition(b" ")
            path = rest.split(b" ", 1)[0]
            if method == b"GET" and path.split(b"?", 1)[0] == b"/metrics":
                body, status = await self.render(), b"200 OK"
                ctype = CONTENT_TYPE.encode()
            else:
                body, status, ctype = b"not found\n", b"404 Not Found", b"text/plain"
            writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-type: " + ctype +
                         b"\r\ncontent-length: " + str(len(body)).encode() +
                         b"\r\nconnection: close\r\n\r\n" + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            pass
        finally:
            writer.close()
