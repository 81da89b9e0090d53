"""Revocations between processes in milliseconds without Redis.

The database's revocation log is the durable backstop every process polls (every
``REVOCATION_POLL_INTERVAL``); these make the common cases as fast as Redis:

* :class:`SocketBus` (SQLite: every process is on this machine): each process — server
  worker, second instance, even a CLI command — binds a Unix datagram socket in a private
  directory next to the database file (``<db>.bus/``, mode 0700) and sends each revocation
  to every socket there. A socket whose process died is removed by the first sender that
  finds it dead.
* :class:`PgNotifyBus` (PostgreSQL): the log insert also runs ``pg_notify`` in the same
  transaction, which PostgreSQL delivers at commit to every listening connection, on every
  machine. Each process keeps one ``LISTEN`` connection (asyncpg) and reconnects when it
  drops.

Either way a message only makes a process apply what the log already holds; losing one
costs at most a poll interval, never a revocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path

from authgate.tasks import cancel

log = logging.getLogger("authgate")
CHANNEL = "authgate_revocations"
MAX_DATAGRAM = 60_000


class SocketBus:
    """Unix datagram sockets in ``<db file>.bus/``."""

    def __init__(self, db_path: Path, apply: Callable[[str], None],
                 delay: Callable[[float], None] | None = None) -> None:
        self.dir = Path(f"{db_path}.bus")
        self.apply = apply
        self.delay = delay
        self.sock: socket.socket | None = None
        self.path: Path | None = None

    def start(self) -> None:
        try:
            self.dir.mkdir(mode=0o700, exist_ok=True)
            path = self.dir / f"{os.getpid()}-{secrets.token_hex(4)}.sock"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(str(path))
        except OSError as exc:  # e.g. a path too long for a Unix socket: poll only
            log.warning("no local revocation bus (%s): revocations reach other processes "
                        "within a poll interval", exc.strerror or exc)
            return
        os.chmod(path, 0o600)
        sock.setblocking(False)
        self.sock, self.path = sock, path
        asyncio.get_running_loop().add_reader(sock.fileno(), self._receive)

    def _receive(self) -> None:
        assert self.sock is not None
        while True:
            try:
                data = self.sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            receive(data.decode("utf-8", "replace"), self.apply, self.delay)

    def publish(self, keys: list[str]) -> None:
        """Tell every other process on this database (no waiting: a full or dead peer is
        skipped; the log reaches it anyway)."""
        if not keys or not self.dir.is_dir():
            return
        payloads = [b.encode() for b in batches(keys, MAX_DATAGRAM)]
        sender = self.sock or socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            for entry in os.scandir(self.dir):
                if not entry.name.endswith(".sock") or (
                        self.path is not None and entry.path == str(self.path)):
                    continue
                for payload in payloads:
                    try:
                        sender.sendto(payload, entry.path)
                    except (ConnectionRefusedError, FileNotFoundError):
                        with contextlib.suppress(OSError):  # its process is gone
                            os.unlink(entry.path)
                        break
                    except OSError:  # a busy peer (buffer full): it polls the log
                        break
        finally:
            if sender is not self.sock:
                sender.close()

    def stop(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.path = None


class PgNotifyBus:
    """One ``LISTEN`` connection per process; the sending side is ``pg_notify`` inside the
    revocation's own transaction (``Records._log``)."""

    def __init__(self, url: str, apply: Callable[[str], None],
                 delay: Callable[[float], None] | None = None) -> None:
        self.url = url
        self.apply = apply
        self.delay = delay
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="authgate-pg-listen")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        receive(payload, self.apply, self.delay)

    async def _listen(self) -> None:
        import asyncpg  # type: ignore[import-untyped]

        while True:
            conn = None
            try:
                conn = await asyncpg.connect(self.url, timeout=5)
                closed = asyncio.Event()
                conn.add_termination_listener(lambda _conn, done=closed: done.set())
                await conn.add_listener(CHANNEL, self._on_notify)
                await closed.wait()
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, TimeoutError):
                await asyncio.sleep(1)  # the poll keeps the bound meanwhile
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=1)


def receive(payload: str, apply: Callable[[str], None],
            delay: Callable[[float], None] | None) -> None:
    """Apply one message: ``@<sent at>`` then one revocation key per line."""
    for line in payload.split("\n"):
        if line.startswith("@"):
            if delay is not None:
                with contextlib.suppress(ValueError):
                    delay(max(0.0, time.time() - float(line[1:])))
        elif line:
            apply(line)


def batches(keys: list[str], limit: int) -> list[str]:
    """``keys`` joined by newlines in pieces of at most ``limit`` bytes (a datagram, or a
    ``pg_notify`` payload, which PostgreSQL caps at 8000 bytes), each starting with the
    time it was sent (``@<epoch seconds>``: the receiver measures the delay)."""
    stamp = f"@{time.time():.6f}"
    out: list[str] = []
    current: list[str] = [stamp]
    size = len(stamp)
    for key in keys:
        if len(current) > 1 and size + len(key) + 1 > limit:
            out.append("\n".join(current))
            current, size = [stamp], len(stamp)
        current.append(key)
        size += len(key) + 1
    if len(current) > 1:
        out.append("\n".join(current))
    return out
