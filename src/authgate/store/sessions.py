"""Session records (cookie sign-ins), stored by the SHA-256 of their ID."""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from authgate.models import Revocation, SessionRecord
from authgate.store import schema as t
from authgate.store.shared import LastSeen, SqlArea, evict, matching


def _session(row: RowMapping) -> SessionRecord:
    return SessionRecord(
        id=row["id"], token_hash=row["token_hash"], user_id=row["user_id"],
        csrf_token=row["csrf_token"], created_at=row["created_at"],
        last_seen_at=row["last_seen_at"], expires_at=row["expires_at"],
        idle_ttl=row["idle_ttl"], remember=bool(row["remember"]), ip=row["ip"],
        user_agent=row["user_agent"], amr=row["amr"], auth_time=row["auth_time"],
    )


TOUCH_SLICE = 1000  # last-seen rows per statement of one flush


class SessionRecords(SqlArea):
    async def insert_session(self, rec: SessionRecord, max_per_user: int | None,
                             now: float, last_seen: LastSeen | None = None) -> list[Revocation]:
        """Store ``rec``; with a cap, evict the least recently used entries (sessions and
        token families) beyond it. Returns the evicted ``(kind, key)`` revocation keys."""
        async with self.db.write() as conn:
            await conn.execute(t.sessions.insert().values(
                id=rec.id, token_hash=rec.token_hash, user_id=rec.user_id,
                csrf_token=rec.csrf_token, created_at=rec.created_at,
                last_seen_at=rec.last_seen_at, expires_at=rec.expires_at, idle_ttl=rec.idle_ttl,
                remember=rec.remember, ip=rec.ip, user_agent=rec.user_agent, amr=rec.amr,
                auth_time=rec.auth_time))
            return await evict(self.db, conn, rec.user_id, max_per_user, now, last_seen)

    async def get_session(self, token_hash: str) -> SessionRecord | None:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(t.sessions).where(
                t.sessions.c.token_hash == token_hash))).mappings().first()
        return _session(row) if row else None

    async def touch_sessions(self, seen: Mapping[str, float]) -> None:
        if not seen:
            return
        at = sa.bindparam("at", type_=sa.Float)
        update = t.sessions.update().where(
            t.sessions.c.id == sa.bindparam("sid"), t.sessions.c.last_seen_at < at).values(
            last_seen_at=at)
        rows = [{"sid": sid, "at": when} for sid, when in seen.items()]
        async with self.db.write() as conn:
            # In slices: preparing 10,000 rows at once held the event loop for ~30 ms (on
            # PostgreSQL); between slices, requests are served.
            for i in range(0, len(rows), TOUCH_SLICE):
                await conn.execute(update, rows[i:i + TOUCH_SLICE])

    async def user_sessions(self, user_id: str, now: float) -> list[SessionRecord]:
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(t.sessions).where(
                t.sessions.c.user_id == user_id, t.sessions.c.expires_at > now).order_by(
                t.sessions.c.created_at))).mappings().all()
        return [rec for rec in map(_session, rows) if rec.alive_at(now)]

    async def delete_sessions(self, now: float, *, session_id: str | None = None,
                              user_id: str | None = None, token_hash: str | None = None,
                              keep: str | None = None) -> list[Revocation]:
        """Delete the sessions that match every filter given (``keep``: a session ID spared);
        log and return their revocation keys."""
        where = matching(t.sessions, id=session_id, user_id=user_id, token_hash=token_hash,
                         keep=keep)
        async with self.db.write() as conn:
            hashes = list((await conn.execute(
                sa.select(t.sessions.c.token_hash).where(where))).scalars())
            if hashes:
                await conn.execute(t.sessions.delete().where(where))
                keys = [Revocation("session", h) for h in hashes]
                await self._log(conn, keys, now)
                return keys
        return []
