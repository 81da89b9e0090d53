"""An outbox table (webhook deliveries, mails): rows written with the change that caused
them, claimed for a lease by one sender at a time, retried with backoff until delivered.

The table has ``id``, ``created_at``, ``attempts``, ``next_attempt_at``, ``claimed_until``,
``delivered_at`` and ``last_error`` columns; everything else is the caller's.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from authgate.store.db import Database


class Outbox:
    """Claim, acknowledge and list the rows of one outbox table."""

    def __init__(self, db: Database, table: sa.Table) -> None:
        self.db = db
        self.table = table

    async def claim(self, now: float, lease: float, limit: int = 20) -> list[RowMapping]:
        """Claim up to ``limit`` due rows for ``lease`` seconds: a row is claimed by one
        sender at a time, however many instances run (SQLite: the write lock; PostgreSQL:
        ``FOR UPDATE SKIP LOCKED``, and the conditional update)."""
        o = self.table
        free = sa.or_(o.c.claimed_until.is_(None), o.c.claimed_until < now)
        due = sa.select(o.c.id).where(
            o.c.delivered_at.is_(None), o.c.next_attempt_at <= now, free
        ).order_by(o.c.created_at).limit(limit)
        if not self.db.is_sqlite:
            due = due.with_for_update(skip_locked=True)
        async with self.db.write() as conn:
            ids = list((await conn.execute(due)).scalars())
            if not ids:
                return []
            await conn.execute(o.update().where(o.c.id.in_(ids), free).values(
                claimed_until=now + lease))
            rows = (await conn.execute(sa.select(o).where(
                o.c.id.in_(ids), o.c.claimed_until == now + lease).order_by(
                o.c.created_at))).mappings().all()
        return list(rows)

    async def delivered(self, row_id: str, now: float, **values: Any) -> None:
        o = self.table
        async with self.db.write() as conn:
            await conn.execute(o.update().where(o.c.id == row_id).values(
                delivered_at=now, claimed_until=None, attempts=o.c.attempts + 1, **values))

    async def failed(self, row_id: str, next_at: float, error: str) -> None:
        o = self.table
        async with self.db.write() as conn:
            await conn.execute(o.update().where(o.c.id == row_id).values(
                next_attempt_at=next_at, claimed_until=None, last_error=error[:200],
                attempts=o.c.attempts + 1))

    async def pending(self, *columns: str) -> list[dict[str, Any]]:
        """The undelivered rows, oldest first: ``id``, ``columns``, ``created_at``,
        ``attempts``, ``next_attempt_at``, ``last_error``."""
        o = self.table
        names = ("id", *columns, "created_at", "attempts", "next_attempt_at", "last_error")
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(*(o.c[n] for n in names)).where(
                o.c.delivered_at.is_(None)).order_by(o.c.created_at))).mappings().all()
        return [dict(r) for r in rows]

    async def depth(self) -> int:
        """How many rows are not delivered yet."""
        o = self.table
        async with self.db.read() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(o).where(
                o.c.delivered_at.is_(None)))).scalar() or 0)

    async def purge(self, before: float) -> int:
        o = self.table
        async with self.db.write() as conn:
            done = await conn.execute(o.delete().where(o.c.delivered_at < before))
        return int(done.rowcount)
