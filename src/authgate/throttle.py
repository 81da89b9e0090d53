"""Login throttling per account and per client IP, with growing backoff; and per-address
limits for the other unauthenticated writes (registration, revocation).

* Account: after ``lock_threshold`` consecutive failures (at most 10) the account waits
  ``2 s * 2**(n - threshold)`` (capped at an hour) before the next attempt is even checked;
  a success clears the count. Keyed by the normalised username whether or not the user
  exists, so a lock reveals nothing. The count is kept until a day after the last failure,
  so a slow attack keeps the long delays.
* Every attempt is *reserved* (counted) atomically before the password is hashed, and a
  success gives the reservation back: however many guesses arrive in parallel, at most
  ``lock_threshold`` of them are evaluated before the lock, then one per lock step.
* Device cookies (OWASP "Slow Down Online Guessing Attacks with Device Cookies"): an
  attempt that carries a valid device cookie of that user counts on that device's own
  counter instead of the account's, so failures from elsewhere never lock the owner's
  known browser out. A stolen device cookie gets its own lock, the same schedule.
* IP: ``ip_limit`` failures within ``ip_window`` seconds of the first (at most 100 in 15
  minutes) refuse further attempts from that address until the window ends. IPv6 clients
  count per /64 (:func:`address_key`).

The state lives where every worker and instance sees it: in the database by default
(:class:`DbThrottle`), in Redis when configured (``authgate.redis.RedisThrottle``).
"""

from __future__ import annotations

import ipaddress
import math
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from authgate.clock import Clock
from authgate.store import schema as t
from authgate.store.db import Database

MAX_DELAY = 3600.0
BASE_DELAY = 2.0
#: How long an account's (or device's) failures are remembered after the last one: the
#: lock schedule needs the count for as long as the attack goes on.
ACCOUNT_MEMORY = 86400.0
_COUNTED = ("acct", "dev")  # scopes with a lock schedule; every other scope is a window


class ThrottleStore(Protocol):
    async def reserve(self, account: str, ip: str, device: str | None = None) -> float:
        """Count one attempt, before the password is checked: on ``account`` and ``ip``, or
        with ``device`` (a known browser of that account) on that device's own counter
        only. Returns the seconds to wait when refused (then nothing is counted), else 0."""
        ...

    async def succeeded(self, account: str, ip: str, device: str | None = None) -> None:
        """The reserved attempt was right: clear the account's (or device's) consecutive
        failures and give back its reservation on ``ip``."""
        ...

    async def hit(self, bucket: str, key: str, limit: int, window: float) -> float:
        """Count one request of ``key`` in ``bucket`` (at most ``limit`` per ``window``
        seconds from the window's first). Returns the seconds to wait when over the limit
        (then it is not counted), else 0."""
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


def address_key(ip: str) -> str:
    """The per-address throttle key of a client address: IPv4 as is, IPv6 by its /64 (one
    customer's allocation: a client picks any address in it at will), an IPv4-mapped IPv6
    address as its IPv4 address. Anything else (no address known) is used as given."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


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
