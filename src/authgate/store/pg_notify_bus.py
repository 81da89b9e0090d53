"""The revocation bus for PostgreSQL without Redis: ``LISTEN``/``NOTIFY``.

The revocation log insert also runs ``pg_notify`` in the same transaction
(:func:`authgate.store.shared.log_revocations`), which PostgreSQL delivers at commit to every
listening connection, on every machine. Each process keeps one ``LISTEN`` connection
(asyncpg) and reconnects when it drops; meanwhile the log poll keeps the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from authgate.models import Revocation
from authgate.store.bus_messages import CHANNEL, DONE, Done, receive
from authgate.tasks import cancel


class PgNotifyBus:
    """One ``LISTEN`` connection per process; the sending side is ``pg_notify`` inside the
    revocation's own transaction (``log_revocations``), so :meth:`publish` has nothing to
    send."""

    def __init__(self, url: str, apply: Callable[[str], None],
                 delay: Callable[[float], None] | None = None) -> None:
        self.url = url
        self.apply = apply
        self.delay = delay
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Done:
        """Start listening (in a task of its own: the returned awaitable is complete)."""
        self._task = asyncio.create_task(self._listen(), name="authgate-pg-listen")
        return DONE

    def publish(self, events: Sequence[Revocation]) -> Done:
        """Nothing to do: the events went out with the log rows, at their commit."""
        return DONE

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
