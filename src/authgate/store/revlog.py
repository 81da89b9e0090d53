"""The revocation log: every revocation is a row written in the transaction of the change
itself; each process tails it (the durable backstop of every revocation bus). Also the
Redis session-cache epoch, which is announced through the log."""

from __future__ import annotations

import sqlalchemy as sa

from authgate.models import Revocation
from authgate.store import schema as t
from authgate.store.shared import SqlArea
from authgate.store.signing_keys import server_secret

LOG_BATCH = 10000
_PG_XMIN = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"


class RevocationLogRecords(SqlArea):
    async def revocations_after(self, last_id: int) -> list[tuple[int, str]]:
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(
                t.revocations.c.id, t.revocations.c.kind, t.revocations.c.key).where(
                t.revocations.c.id > last_id).order_by(t.revocations.c.id).limit(LOG_BATCH))
                ).all()
        return [(r.id, f"{r.kind}:{r.key}") for r in rows]

    async def revocation_cursor(self) -> int:
        """Where a new reader of the log starts: see :meth:`revocations_since`."""
        if self.db.is_sqlite:
            return await self.last_revocation_id()
        async with self.db.read() as conn:
            return int((await conn.execute(sa.text(_PG_XMIN))).scalar_one())

    async def revocations_since(self, cursor: int) -> tuple[list[tuple[int, str, int]], int]:
        """Log rows a reader at ``cursor`` may not have seen: ``[(id, key, mark)]`` and the
        next cursor. A row whose mark is at least the next cursor may be returned again
        (de-duplicate by id); one below it never is.

        SQLite serialises writers, so ids commit in order: the cursor is the last id.
        PostgreSQL takes ids from a sequence at INSERT but transactions commit in any order,
        so "id > last id" would skip a slow transaction's row for good. There the cursor is
        a transaction id: every row of a transaction still running (or not yet begun) when
        a snapshot is taken has ``txid >= pg_snapshot_xmin`` of that snapshot, so reading
        ``txid >= previous xmin`` cannot miss a late commit."""
        if self.db.is_sqlite:
            rows = await self.revocations_after(cursor)
            return [(i, key, i) for i, key in rows], rows[-1][0] if rows else cursor
        events: list[tuple[int, str, int]] = []
        async with self.db.read() as conn:
            # The horizon first: rows invisible to the reads below belong to transactions
            # running at this snapshot or later, whose txid is >= this xmin.
            xmin = int((await conn.execute(sa.text(_PG_XMIN))).scalar_one())
            after = (cursor, 0)
            while True:  # keyset pages in (txid, id) order: all of txid >= cursor
                page = (await conn.execute(sa.text(
                    "SELECT id, kind, key, txid::text::bigint AS mark FROM revocations "
                    "WHERE (txid, id) > (CAST(CAST(:txid AS text) AS xid8), :id) "
                    "ORDER BY txid, id LIMIT :limit"),
                    {"txid": str(after[0]), "id": after[1], "limit": LOG_BATCH})).all()
                events += [(r.id, f"{r.kind}:{r.key}", int(r.mark)) for r in page]
                if len(page) < LOG_BATCH:
                    break
                after = (int(page[-1].mark), int(page[-1].id))
        return events, max(cursor, xmin)

    async def last_revocation_id(self) -> int:
        async with self.db.read() as conn:
            value = (await conn.execute(sa.select(sa.func.max(t.revocations.c.id)))).scalar()
        return int(value or 0)

    async def redis_epoch(self) -> int:
        """The generation of the Redis session cache the database vouches for."""
        return int(await server_secret(self.db, "redis_epoch", "0"))

    async def bump_redis_epoch(self, now: float) -> int:
        """Disown every session entry in Redis (a tombstone may be missing from it): a new
        epoch, logged so every process switches to it within a poll."""
        async with self.db.write() as conn:
            value = (await conn.execute(sa.select(t.server_secrets.c.value).where(
                t.server_secrets.c.name == "redis_epoch").with_for_update())).scalar()
            epoch = int(value or 0) + 1
            if value is None:
                await conn.execute(t.server_secrets.insert().values(
                    name="redis_epoch", value=str(epoch)))
            else:
                await conn.execute(t.server_secrets.update().where(
                    t.server_secrets.c.name == "redis_epoch").values(value=str(epoch)))
            await self._log(conn, [Revocation("redis", str(epoch))], now)
        return epoch
