"""Durable security events and their webhook outbox, on SQLite or PostgreSQL."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from authgate.events import AuthEvent
from authgate.store import schema as t
from authgate.store.db import Database
from authgate.store.outbox import Outbox


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook delivery claimed for sending."""

    id: str
    type: str
    payload: str
    created_at: float
    attempts: int


class AuditRecords:
    """The ``audit_events`` table and the ``webhook_outbox``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.outbox = Outbox(db, t.webhook_outbox)

    async def store_events(self, events: list[AuthEvent], webhooks: bool) -> None:
        async with self.db.write() as conn:
            await conn.execute(t.audit_events.insert(), [
                {"at": e.at, "type": e.type, "user_id": e.user_id, "actor": e.actor,
                 "ip": e.ip[:64], "user_agent": e.user_agent[:512],
                 "data": json.dumps(e.data, default=str)} for e in events])
            if webhooks:
                await conn.execute(t.webhook_outbox.insert(), [
                    {"id": f"msg_{secrets.token_urlsafe(18)}", "type": e.type,
                     "payload": json.dumps({"type": e.type, "timestamp": _iso(e.at),
                                            "data": e.to_json()}, default=str),
                     "created_at": e.at, "next_attempt_at": e.at} for e in events])

    async def list_events(self, *, user_id: str | None = None, since: float | None = None,
                          limit: int = 100) -> list[AuthEvent]:
        """Events oldest first (the newest ``limit`` of them)."""
        a = t.audit_events
        query = sa.select(a)
        if user_id is not None:
            query = query.where(a.c.user_id == user_id)
        if since is not None:
            query = query.where(a.c.at >= since)
        query = query.order_by(a.c.at.desc(), a.c.id.desc()).limit(limit)
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_event(r) for r in reversed(rows)]

    async def user_events(self, user_id: str, *, before: int | None = None,
                          limit: int = 50, types: tuple[str, ...] = ()
                          ) -> list[tuple[int, AuthEvent]]:
        """A user's events newest first, with their ids: up to ``limit`` of those older
        than the event ``before`` (keyset pagination), of ``types`` when given."""
        a = t.audit_events
        query = sa.select(a).where(a.c.user_id == user_id)
        if before is not None:
            query = query.where(a.c.id < before)
        if types:
            query = query.where(a.c.type.in_(types))
        query = query.order_by(a.c.id.desc()).limit(limit)
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [(r["id"], _event(r)) for r in rows]

    async def purge(self, before: float) -> int:
        async with self.db.write() as conn:
            done = await conn.execute(t.audit_events.delete().where(t.audit_events.c.at < before))
        await self.outbox.purge(before)
        return int(done.rowcount)

    # -- the outbox (see authgate.store.outbox) ------------------------------------------

    async def claim(self, now: float, lease: float, limit: int = 20) -> list[Delivery]:
        """Claim up to ``limit`` due deliveries for ``lease`` seconds (one sender each)."""
        return [Delivery(r["id"], r["type"], r["payload"], r["created_at"], r["attempts"])
                for r in await self.outbox.claim(now, lease, limit)]

    async def delivered(self, delivery_id: str, now: float) -> None:
        await self.outbox.delivered(delivery_id, now)

    async def failed(self, delivery_id: str, next_at: float, error: str) -> None:
        await self.outbox.failed(delivery_id, next_at, error)

    async def pending(self) -> list[dict[str, Any]]:
        return await self.outbox.pending("type")


def _event(r: Any) -> AuthEvent:
    return AuthEvent(type=r["type"], at=r["at"], user_id=r["user_id"], actor=r["actor"],
                     ip=r["ip"], user_agent=r["user_agent"], data=json.loads(r["data"]))


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
