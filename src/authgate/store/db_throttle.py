"""The throttle of :mod:`authgate.throttle` with its state in the database's ``throttle``
table (SQLite or PostgreSQL): shared by every worker and instance on that database."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from authgate.clock import Clock
from authgate.store import schema as t
from authgate.store.db import Database
from authgate.throttle import ACCOUNT_MEMORY, account_delay, wait_seconds

_COUNTED = ("acct", "dev")  # scopes with a lock schedule; every other scope is a window


class _Refused(Exception):
    """Raised inside a write transaction to roll the reservations back."""

    def __init__(self, wait: float) -> None:
        super().__init__()
        self.wait = wait


class DbThrottle:
    """Throttle state in the ``throttle`` table: shared by workers and instances.

    Rows of ``acct``/``dev``: ``failures`` counted, ``locked_until``, and ``window_start``
    = the time of the last counted attempt. Window rows (``ip``, limits): ``failures`` in
    the window that started at ``window_start`` and ends at ``locked_until``."""

    def __init__(self, db: Database, clock: Clock, lock_threshold: int = 5,
                 ip_limit: int = 50, ip_window: float = 900.0) -> None:
        self.db = db
        self.clock = clock
        self.lock_threshold = lock_threshold
        self.ip_limit = ip_limit
        self.ip_window = ip_window

    def _insert(self) -> Any:
        return (pg_insert if not self.db.is_sqlite else sqlite_insert)(t.throttle)

    async def _count(self, conn: AsyncConnection, scope: str, key: str, now: float) -> float:
        """One more failure on a lock schedule unless locked: the wait, else 0. One
        statement (INSERT ... ON CONFLICT DO UPDATE ... WHERE not locked RETURNING): the
        row lock makes parallel reservations take turns, each seeing the one before."""
        th = t.throttle
        stmt = self._insert().values(scope=scope, key=key, failures=1, window_start=now,
                                     locked_until=0.0)
        upsert = stmt.on_conflict_do_update(
            index_elements=[th.c.scope, th.c.key],
            set_={"failures": th.c.failures + 1, "window_start": now},
            where=th.c.locked_until <= now).returning(th.c.failures)
        row = (await conn.execute(upsert)).first()
        where = (th.c.scope == scope, th.c.key == key)
        if row is None:  # locked: not counted
            locked = (await conn.execute(sa.select(th.c.locked_until).where(*where)))
            return float(locked.scalar_one()) - now
        delay = account_delay(int(row.failures), self.lock_threshold)
        if delay:  # same transaction: the next reservation waits for this row and sees it
            await conn.execute(th.update().where(*where).values(locked_until=now + delay))
        return 0.0

    async def _window(self, conn: AsyncConnection, scope: str, key: str, limit: int,
                      window: float, now: float) -> float:
        """One more in a fixed window unless it is full: the wait, else 0 (one statement)."""
        th = t.throttle
        lapsed = th.c.window_start <= now - window
        stmt = self._insert().values(scope=scope, key=key, failures=1, window_start=now,
                                     locked_until=now + window)
        upsert = stmt.on_conflict_do_update(
            index_elements=[th.c.scope, th.c.key],
            set_={"failures": sa.case((lapsed, 1), else_=th.c.failures + 1),
                  "window_start": sa.case((lapsed, now), else_=th.c.window_start),
                  "locked_until": sa.case((lapsed, now + window),
                                          else_=th.c.window_start + window)},
            where=sa.or_(lapsed, th.c.failures < limit)).returning(th.c.failures)
        if (await conn.execute(upsert)).first() is not None:
            return 0.0
        start = (await conn.execute(sa.select(th.c.window_start).where(
            th.c.scope == scope, th.c.key == key))).scalar_one()
        return float(start) + window - now

    async def reserve(self, account: str, ip: str, device: str | None = None) -> float:
        now = self.clock.now()
        try:
            async with self.db.write() as conn:
                if device is not None:
                    wait = await self._count(conn, "dev", device, now)
                else:
                    wait = max(await self._count(conn, "acct", account, now),
                               await self._window(conn, "ip", ip, self.ip_limit,
                                                  self.ip_window, now))
                if wait > 0:
                    raise _Refused(wait)  # roll back: a refused attempt counts nowhere
        except _Refused as refused:
            return wait_seconds(refused.wait)
        return 0.0

    async def succeeded(self, account: str, ip: str, device: str | None = None) -> None:
        th = t.throttle
        async with self.db.write() as conn:
            scope, key = ("dev", device) if device is not None else ("acct", account)
            await conn.execute(th.delete().where(th.c.scope == scope, th.c.key == key))
            if device is None:
                await conn.execute(th.update().where(
                    th.c.scope == "ip", th.c.key == ip, th.c.failures > 0,
                    th.c.locked_until > self.clock.now()).values(failures=th.c.failures - 1))

    async def hit(self, bucket: str, key: str, limit: int, window: float) -> float:
        now = self.clock.now()
        async with self.db.write() as conn:
            wait = await self._window(conn, bucket, key, limit, window, now)
        return wait_seconds(wait)

    async def purge(self) -> int:
        """Forget entries that no longer throttle anything: a lock schedule a day after its
        last failure (and not locked), a window once it ended."""
        now = self.clock.now()
        th = t.throttle
        async with self.db.write() as conn:
            result = await conn.execute(th.delete().where(
                th.c.locked_until < now,
                sa.or_(th.c.scope.not_in(_COUNTED),
                       th.c.window_start < now - ACCOUNT_MEMORY)))
        return int(result.rowcount)
