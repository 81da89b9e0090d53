"""Login throttling per account and per client IP, with growing backoff.

* Account: after ``lock_threshold`` consecutive failures (at most 10) the account waits
  ``2 s * 2**(n - threshold)`` (capped at an hour) before the next attempt is even checked;
  a success clears the count. Keyed by the normalised username whether or not the user
  exists, so a lock reveals nothing.
* IP: ``ip_limit`` failures within ``ip_window`` seconds of the first (at most 100 in 15
  minutes) refuse further attempts from that address until the window ends.

The state lives where every worker and instance sees it: in the database by default
(:class:`DbThrottle`), in Redis when configured (``authgate.redis.RedisThrottle``).
"""

from __future__ import annotations

import math
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from authgate.clock import Clock
from authgate.store import schema as t
from authgate.store.db import Database

MAX_DELAY = 3600.0
BASE_DELAY = 2.0


class ThrottleStore(Protocol):
    async def retry_after(self, account: str, ip: str) -> float:
        """Seconds to wait before ``account`` may try from ``ip``; 0 when allowed."""
        ...

    async def failed(self, account: str, ip: str) -> None:
        """Count one failed attempt for both."""
        ...

    async def succeeded(self, account: str) -> None:
        """Clear the account's consecutive failures."""
        ...

    async def purge(self) -> int:
        """Forget what no longer throttles anything; returns how many entries."""
        ...


def account_delay(failures: int, threshold: int) -> float:
    """The lock after ``failures`` consecutive failures."""
    if failures < threshold:
        return 0.0
    return min(MAX_DELAY, BASE_DELAY * float(2 ** min(failures - threshold, 20)))


def wait_seconds(seconds: float) -> float:
    return float(math.ceil(seconds)) if seconds > 0 else 0.0


async def upsert_increment(conn: AsyncConnection, db: Database, scope: str, key: str,
                           now: float) -> int:
    """Add one failure to (scope, key), creating the row; returns the new count."""
    insert = (pg_insert if not db.is_sqlite else sqlite_insert)(t.throttle)
    stmt = insert.values(scope=scope, key=key, failures=1, window_start=now, locked_until=0.0)
    upsert = stmt.on_conflict_do_update(
        index_elements=[t.throttle.c.scope, t.throttle.c.key],
        set_={"failures": t.throttle.c.failures + 1}).returning(t.throttle.c.failures)
    return int((await conn.execute(upsert)).scalar_one())


class DbThrottle:
    """Throttle state in the ``throttle`` table: shared by workers and instances."""

    def __init__(self, db: Database, clock: Clock, lock_threshold: int = 5,
                 ip_limit: int = 50, ip_window: float = 900.0) -> None:
        self.db = db
        self.clock = clock
        self.lock_threshold = lock_threshold
        self.ip_limit = ip_limit
        self.ip_window = ip_window

    async def retry_after(self, account: str, ip: str) -> float:
        now = self.clock.now()
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(t.throttle).where(sa.or_(
                sa.and_(t.throttle.c.scope == "acct", t.throttle.c.key == account),
                sa.and_(t.throttle.c.scope == "ip", t.throttle.c.key == ip))))).all()
        wait = 0.0
        for row in rows:
            if row.scope == "acct":
                wait = max(wait, row.locked_until - now)
            elif row.failures >= self.ip_limit and row.window_start + self.ip_window > now:
                wait = max(wait, row.window_start + self.ip_window - now)
        return wait_seconds(wait)

    async def failed(self, account: str, ip: str) -> None:
        now = self.clock.now()
        th = t.throttle
        async with self.db.write() as conn:
            # Atomic increments (INSERT ... ON CONFLICT DO UPDATE): parallel failures all count.
            failures = await upsert_increment(conn, self.db, "acct", account, now)
            delay = account_delay(failures, self.lock_threshold)
            if delay:
                await conn.execute(th.update().where(
                    th.c.scope == "acct", th.c.key == account).values(locked_until=now + delay))
            await conn.execute(th.update().where(
                th.c.scope == "ip", th.c.key == ip,
                th.c.window_start <= now - self.ip_window).values(failures=0, window_start=now))
            await upsert_increment(conn, self.db, "ip", ip, now)

    async def succeeded(self, account: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(t.throttle.delete().where(
                t.throttle.c.scope == "acct", t.throttle.c.key == account))

    async def purge(self) -> int:
        """Forget entries that no longer throttle anything."""
        now = self.clock.now()
        async with self.db.write() as conn:
            result = await conn.execute(t.throttle.delete().where(
                t.throttle.c.locked_until < now,
                t.throttle.c.window_start < now - self.ip_window))
        return int(result.rowcount)
