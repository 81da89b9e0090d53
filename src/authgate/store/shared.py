"""Statements several record areas run inside their own transactions: the revocation log
write, a family's revocation, the per-user cap, and the guarded ``WHERE`` of a bulk delete."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from authgate.models import Revocation
from authgate.store import schema as t
from authgate.store.bus_messages import CHANNEL, batches
from authgate.store.db import Database

#: What the engine knows of a session's last use beyond the stored (lagging) last_seen_at.
LastSeen = Callable[[str], float | None]


class SqlArea:
    """One area of the durable records: every method is one short transaction on ``db``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def _log(self, conn: AsyncConnection, events: Sequence[Revocation],
                   now: float) -> None:
        await log_revocations(self.db, conn, events, now)


async def log_revocations(db: Database, conn: AsyncConnection, events: Sequence[Revocation],
                          now: float) -> None:
    """Append ``events`` to the revocation log in the caller's transaction."""
    if events:
        await conn.execute(t.revocations.insert(), [
            {"kind": e.kind, "key": e.value, "at": now} for e in events])
        if not db.is_sqlite:  # delivered at commit to every LISTENing process
            for payload in batches([str(e) for e in events], 7000):
                await conn.execute(sa.select(sa.func.pg_notify(CHANNEL, payload)))


async def revoke_family(conn: AsyncConnection, family_id: str, now: float) -> None:
    await conn.execute(t.token_families.update().where(
        t.token_families.c.id == family_id).values(revoked_at=now))
    await conn.execute(t.refresh_tokens.delete().where(
        t.refresh_tokens.c.family_id == family_id))


async def evict(db: Database, conn: AsyncConnection, user_id: str, cap: int | None,
                now: float, last_seen: LastSeen | None = None) -> list[Revocation]:
    """Keep at most ``cap`` entries (sessions and live token families) of ``user_id``, least
    recently used first out; log and return the evicted revocation keys. A session's stored
    last_seen_at is written at most every touch interval; ``last_seen`` (token hash → the
    engine's in-memory last use) supplies the real recency of sessions in active use."""
    if cap is None:
        return []
    sess = (await conn.execute(sa.select(
        t.sessions.c.id, t.sessions.c.token_hash, t.sessions.c.last_seen_at).where(
        t.sessions.c.user_id == user_id))).all()
    fams = (await conn.execute(sa.select(
        t.token_families.c.id, t.token_families.c.last_seen_at).where(
        t.token_families.c.user_id == user_id, t.token_families.c.revoked_at.is_(None),
        t.token_families.c.expires_at > now))).all()
    entries = [(max(r.last_seen_at, (last_seen and last_seen(r.token_hash)) or 0.0),
                "session", r.id, r.token_hash) for r in sess]
    entries += [(r.last_seen_at, "family", r.id, r.id) for r in fams]
    entries.sort(key=lambda e: e[0])
    evicted: list[Revocation] = []
    for _, kind, row_id, key in entries[: max(0, len(entries) - cap)]:
        if kind == "session":
            await conn.execute(t.sessions.delete().where(t.sessions.c.id == row_id))
            evicted.append(Revocation("session", key))
        else:
            await revoke_family(conn, row_id, now)
            evicted.append(Revocation("family", key))
    await log_revocations(db, conn, evicted, now)
    return evicted


def matching(table: sa.Table, *, keep: str | None, **columns: str | None) -> Any:
    """``column = value`` for every value given, and ``id != keep``; at least one filter, so a
    forgotten argument can never match every row."""
    clauses = [table.c[name] == value for name, value in columns.items() if value is not None]
    if not clauses:
        raise ValueError("refusing to match every row")
    if keep is not None:
        clauses.append(table.c.id != keep)
    return sa.and_(*clauses)
