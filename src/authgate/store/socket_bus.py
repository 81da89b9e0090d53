"""The revocation bus for SQLite: every process is on this machine.

Each process — server worker, second instance, even a CLI command — binds a Unix datagram
socket in a private directory next to the database file (``<db>.bus/``, mode 0700) and sends
each revocation to every socket there. A socket whose process died is removed by the first
sender that finds it dead. A message only makes a process apply what the database's
revocation log already holds (polled every ``REVOCATION_POLL_INTERVAL``): losing one costs at
most a poll interval, never a revocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable, Sequence
from pathlib import Path

from authgate.models import Revocation
from authgate.store.bus_messages import DONE, Done, batches, receive

log = logging.getLogger("authgate")
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

    def start(self) -> Done:
        """Bind this process's socket (synchronous: the returned awaitable is complete)."""
        try:
            self.dir.mkdir(mode=0o700, exist_ok=True)
            path = self.dir / f"{os.getpid()}-{secrets.token_hex(4)}.sock"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(str(path))
        except OSError as exc:  # e.g. a path too long for a Unix socket: poll only
            log.warning("no local revocation bus (%s): revocations reach other processes "
                        "within a poll interval", exc.strerror or exc)
            return DONE
        os.chmod(path, 0o600)
        sock.setblocking(False)
        self.sock, self.path = sock, path
        asyncio.get_running_loop().add_reader(sock.fileno(), self._receive)
        return DONE

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

    def publish(self, events: Sequence[Revocation]) -> Done:
        """Tell every other process on this database (no waiting: a full or dead peer is
        skipped; the log reaches it anyway)."""
        if not events or not self.dir.is_dir():
            return DONE
        payloads = [b.encode() for b in batches([str(e) for e in events], MAX_DATAGRAM)]
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
        return DONE

    def stop(self) -> Done:
        if self.sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.path = None
        return DONE
