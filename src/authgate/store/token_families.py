"""Token families (one per token sign-in), their rotating refresh tokens, and the ``jti``
denylist of access tokens revoked before they expire."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from authgate.models import Revocation, TokenFamily
from authgate.store import schema as t
from authgate.store.shared import LastSeen, SqlArea, evict, matching, revoke_family

SUPERSEDED = 0.0  # used_at of a grace-window sibling that lost to another


def _family(row: RowMapping) -> TokenFamily:
    return TokenFamily(
        id=row["id"], user_id=row["user_id"], scope=row["scope"],
        created_at=row["created_at"], last_seen_at=row["last_seen_at"],
        expires_at=row["expires_at"], revoked_at=row["revoked_at"], ip=row["ip"],
        user_agent=row["user_agent"], amr=row["amr"], auth_time=row["auth_time"],
    )


class TokenRecords(SqlArea):
    async def create_family(self, fam: TokenFamily, refresh_hash: str, refresh_expires: float,
                            max_per_user: int | None, now: float,
                            last_seen: LastSeen | None = None) -> list[Revocation]:
        async with self.db.write() as conn:
            await conn.execute(t.token_families.insert().values(
                id=fam.id, user_id=fam.user_id, scope=fam.scope, created_at=fam.created_at,
                last_seen_at=fam.last_seen_at, expires_at=fam.expires_at, ip=fam.ip,
                user_agent=fam.user_agent, amr=fam.amr, auth_time=fam.auth_time))
            await conn.execute(t.refresh_tokens.insert().values(
                token_hash=refresh_hash, family_id=fam.id, created_at=now,
                expires_at=refresh_expires))
            return await evict(self.db, conn, fam.user_id, max_per_user, now, last_seen)

    async def rotate_refresh(self, token_hash: str, new_hash: str, now: float,
                             grace: float, idle_ttl: float | None
                             ) -> tuple[str, TokenFamily | None]:
        """Consume ``token_hash`` atomically and store ``new_hash`` in its family.

        Returns ``("ok", family)``; ``("reuse", family)`` when the token was already used
        outside the grace window (the family is then revoked in the same transaction);
        ``("invalid", None)`` when unknown, expired or its family is gone.
        """
        rt, fam_t = t.refresh_tokens, t.token_families
        async with self.db.write() as conn:
            if not self.db.is_sqlite:
                # Lock the family row before touching any of its refresh tokens, as
                # revoke_family does (family, then tokens): concurrent rotations and
                # revocations of one family queue here instead of deadlocking on the tokens'
                # row locks. SQLite's BEGIN IMMEDIATE serialises writers already.
                await conn.execute(sa.select(fam_t.c.id).where(
                    fam_t.c.id == sa.select(rt.c.family_id).where(
                        rt.c.token_hash == token_hash).scalar_subquery()).with_for_update())
            row = (await conn.execute(sa.select(rt, fam_t).join(
                fam_t, fam_t.c.id == rt.c.family_id).where(rt.c.token_hash == token_hash))
                ).mappings().first()
            if row is None:
                return "invalid", None
            fam = _family(row)
            if fam.revoked_at is not None or now >= fam.expires_at or now >= row["expires_at"]:
                return "invalid", fam
            if idle_ttl is not None and now >= fam.last_seen_at + idle_ttl:
                return "invalid", fam
            # The atomic consume: exactly one concurrent caller sees rowcount 1.
            consumed = await conn.execute(rt.update().where(
                rt.c.token_hash == token_hash, rt.c.used_at.is_(None)).values(used_at=now))
            if consumed.rowcount != 1:
                used_at = row["used_at"] if row["used_at"] is not None else now
                # A grace replay is a lost race only while no child of this token has been
                # used: once one has, the legitimate client has moved on and this is a copy.
                child_used = grace > 0 and (await conn.execute(sa.select(rt.c.token_hash).where(
                    rt.c.parent_hash == token_hash, rt.c.used_at.is_not(None)).limit(1))
                    ).first() is not None
                if grace <= 0 or now - used_at > grace or child_used:
                    await self._revoke_family(conn, fam.id, now)
                    await self._log(conn, [Revocation("family", fam.id)], now)
                    return "reuse", fam
                # A replay within the grace window gets a sibling of the token the first
                # use got; whichever sibling is used first wins (below).
            elif row["parent_hash"] is not None:
                # One live branch: the siblings minted by grace replays of our parent are
                # marked used long ago, so presenting one later is reuse.
                await conn.execute(rt.update().where(
                    rt.c.parent_hash == row["parent_hash"], rt.c.token_hash != token_hash,
                    rt.c.used_at.is_(None)).values(used_at=SUPERSEDED))
            await conn.execute(rt.insert().values(
                token_hash=new_hash, family_id=fam.id, created_at=now,
                expires_at=fam.expires_at, parent_hash=token_hash))
            await conn.execute(fam_t.update().where(fam_t.c.id == fam.id).values(
                last_seen_at=now))
            return "ok", fam

    async def refresh_family(self, token_hash: str) -> TokenFamily | None:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(t.token_families).join(
                t.refresh_tokens, t.refresh_tokens.c.family_id == t.token_families.c.id).where(
                t.refresh_tokens.c.token_hash == token_hash))).mappings().first()
        return _family(row) if row else None

    async def get_family(self, family_id: str) -> TokenFamily | None:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(t.token_families).where(
                t.token_families.c.id == family_id))).mappings().first()
        return _family(row) if row else None

    async def user_families(self, user_id: str, now: float) -> list[TokenFamily]:
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(t.token_families).where(
                t.token_families.c.user_id == user_id, t.token_families.c.revoked_at.is_(None),
                t.token_families.c.expires_at > now).order_by(t.token_families.c.created_at))
                ).mappings().all()
        return [_family(r) for r in rows]

    async def revoke_families(self, now: float, *, family_id: str | None = None,
                              user_id: str | None = None, keep: str | None = None
                              ) -> list[Revocation]:
        """Revoke the live token families that match every filter given (``keep``: a family
        ID spared); log and return their revocation keys."""
        where = matching(t.token_families, id=family_id, user_id=user_id, keep=keep)
        async with self.db.write() as conn:
            ids = list((await conn.execute(sa.select(t.token_families.c.id).where(
                where, t.token_families.c.revoked_at.is_(None)))).scalars())
            for fid in ids:
                await self._revoke_family(conn, fid, now)
            keys = [Revocation("family", fid) for fid in ids]
            await self._log(conn, keys, now)
        return keys

    async def _revoke_family(self, conn: AsyncConnection, family_id: str, now: float) -> None:
        # A method (not only the function) so a test can slow one revocation down.
        await revoke_family(conn, family_id, now)

    async def revoked_families_since(self, since: float) -> list[str]:
        """Families revoked after ``since``: their access tokens may still be unexpired."""
        async with self.db.read() as conn:
            return list((await conn.execute(sa.select(t.token_families.c.id).where(
                t.token_families.c.revoked_at > since))).scalars())

    async def deny_jti(self, jti: str, expires_at: float, now: float) -> bool:
        """Deny ``jti``; False (nothing written, nothing logged) when it is denied already,
        so a repeated revoke cannot grow the revocation log."""
        insert = (sqlite_insert if self.db.is_sqlite else pg_insert)(t.denied_jtis)
        async with self.db.write() as conn:
            added = await conn.execute(insert.values(jti=jti, expires_at=expires_at)
                                       .on_conflict_do_nothing(index_elements=["jti"]))
            if added.rowcount != 1:
                return False
            await self._log(conn, [Revocation("jti", jti)], now)
        return True

    async def denied_jtis(self, now: float) -> list[tuple[str, float]]:
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(t.denied_jtis).where(
                t.denied_jtis.c.expires_at > now))).all()
        return [(r.jti, r.expires_at) for r in rows]
