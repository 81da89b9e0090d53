"""API keys (personal access tokens), stored by the SHA-256 of the key as given."""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from authgate.models import ApiKeyRecord, Revocation
from authgate.store import schema as t
from authgate.store.shared import SqlArea, matching


def _api_key(row: RowMapping) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row["id"], digest=row["digest"], user_id=row["user_id"], name=row["name"],
        scopes=tuple(row["scopes"].split()), created_at=row["created_at"],
        expires_at=row["expires_at"], last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"], written_at=row["last_used_at"] or 0.0,
    )


class ApiKeyRecords(SqlArea):
    async def insert_api_key(self, rec: ApiKeyRecord, max_per_user: int) -> bool:
        """Store ``rec`` unless its user holds ``max_per_user`` live keys already (False)."""
        k = t.api_keys
        async with self.db.write() as conn:
            held = (await conn.execute(sa.select(sa.func.count()).select_from(k).where(
                k.c.user_id == rec.user_id, k.c.revoked_at.is_(None)))).scalar_one()
            if held >= max_per_user:
                return False
            await conn.execute(k.insert().values(
                id=rec.id, digest=rec.digest, user_id=rec.user_id, name=rec.name,
                scopes=" ".join(rec.scopes), created_at=rec.created_at,
                expires_at=rec.expires_at))
        return True

    async def get_api_key(self, digest: str) -> ApiKeyRecord | None:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(t.api_keys).where(
                t.api_keys.c.digest == digest))).mappings().first()
        return _api_key(row) if row else None

    async def user_api_keys(self, user_id: str, now: float) -> list[ApiKeyRecord]:
        """The user's live keys (not revoked, not expired), oldest first."""
        k = t.api_keys
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(k).where(
                k.c.user_id == user_id, k.c.revoked_at.is_(None),
                sa.or_(k.c.expires_at.is_(None), k.c.expires_at > now)).order_by(
                k.c.created_at))).mappings().all()
        return [_api_key(r) for r in rows]

    async def revoke_api_keys(self, now: float, *, key_id: str | None = None,
                              user_id: str | None = None, digest: str | None = None
                              ) -> list[Revocation]:
        """Revoke the live keys that match every filter given; log and return their
        revocation keys."""
        k = t.api_keys
        where = matching(k, id=key_id, user_id=user_id, digest=digest, keep=None)
        async with self.db.write() as conn:
            digests = list((await conn.execute(sa.select(k.c.digest).where(
                where, k.c.revoked_at.is_(None)))).scalars())
            if not digests:
                return []
            await conn.execute(k.update().where(where, k.c.revoked_at.is_(None)).values(
                revoked_at=now))
            events = [Revocation("api_key", d) for d in digests]
            await self._log(conn, events, now)
        return events

    async def touch_api_keys(self, used: Mapping[str, float]) -> None:
        """Store the last use of each key (id → time); never moves one back."""
        if not used:
            return
        k = t.api_keys
        async with self.db.write() as conn:
            for key_id, at in used.items():
                await conn.execute(k.update().where(
                    k.c.id == key_id, sa.or_(k.c.last_used_at.is_(None),
                                             k.c.last_used_at < at)).values(last_used_at=at))

    async def purge_api_keys(self, now: float, keep: float) -> int:
        """Delete keys revoked or expired more than ``keep`` seconds ago."""
        k = t.api_keys
        async with self.db.write() as conn:
            return int((await conn.execute(k.delete().where(sa.or_(
                k.c.revoked_at <= now - keep, k.c.expires_at <= now - keep)))).rowcount)
