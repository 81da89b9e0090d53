"""Durable records: every query the engine makes, in one place, on SQLite or PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from authgate.errors import UsernameTaken
from authgate.localbus import CHANNEL, batches
from authgate.models import SessionRecord, TokenFamily, User
from authgate.store import schema as t
from authgate.store.db import Database

SUPERSEDED = 0.0  # used_at of a grace-window sibling that lost to another
LOG_BATCH = 10000
#: What the engine knows of a session's last use beyond the stored (lagging) last_seen_at.
LastSeen = Callable[[str], float | None]


def _user(row: RowMapping) -> User:
    return User(
        id=row["id"], username=row["username"], roles=tuple(json.loads(row["roles"])),
        disabled=bool(row["disabled"]), created_at=row["created_at"],
        tokens_valid_after=row["tokens_valid_after"],
    )


def _session(row: RowMapping) -> SessionRecord:
    return SessionRecord(
        id=row["id"], token_hash=row["token_hash"], user_id=row["user_id"],
        csrf_token=row["csrf_token"], created_at=row["created_at"],
        last_seen_at=row["last_seen_at"], expires_at=row["expires_at"],
        idle_ttl=row["idle_ttl"], remember=bool(row["remember"]), ip=row["ip"],
        user_agent=row["user_agent"],
    )


def _family(row: RowMapping) -> TokenFamily:
    return TokenFamily(
        id=row["id"], user_id=row["user_id"], scope=row["scope"],
        created_at=row["created_at"], last_seen_at=row["last_seen_at"],
        expires_at=row["expires_at"], revoked_at=row["revoked_at"], ip=row["ip"],
        user_agent=row["user_agent"],
    )


_PG_XMIN = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"


def username_key(username: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFKC", username).casefold()


class Records:
    """The engine's durable state. Each method is one short transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- users ---------------------------------------------------------------------------

    async def create_user(self, user: User, password_hash: str) -> User:
        try:
            async with self.db.write() as conn:
                await conn.execute(t.users.insert().values(
                    id=user.id, username=user.username, username_key=username_key(user.username),
                    password_hash=password_hash, roles=json.dumps(list(user.roles)),
                    disabled=user.disabled, created_at=user.created_at,
                    tokens_valid_after=user.tokens_valid_after,
                ))
        except IntegrityError:
            raise UsernameTaken() from None
        return user

    async def user_with_hash(self, username: str) -> tuple[User, str] | None:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(t.users).where(
                t.users.c.username_key == username_key(username)))).mappings().first()
        return (_user(row), row["password_hash"]) if row else None

    async def password_hash(self, user_id: str) -> str | None:
        async with self.db.read() as conn:
            value = (await conn.execute(sa.select(t.users.c.password_hash).where(
                t.users.c.id == user_id))).scalar()
        return str(value) if value is not None else None

    async def get_user(self, user_id: str) -> User | None:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(t.users).where(t.users.c.id == user_id))
                   ).mappings().first()
        return _user(row) if row else None

    async def get_users(self, user_ids: Iterable[str]) -> dict[str, User]:
        ids = list(set(user_ids))
        if not ids:
            return {}
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(t.users).where(t.users.c.id.in_(ids)))
                    ).mappings().all()
        return {row["id"]: _user(row) for row in rows}

    async def list_users(self) -> list[User]:
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(t.users).order_by(t.users.c.created_at))
                    ).mappings().all()
        return [_user(r) for r in rows]

    async def update_user(self, user_id: str, **values: Any) -> bool:
        if "roles" in values:
            values["roles"] = json.dumps(list(values["roles"]))
        async with self.db.write() as conn:
            result = await conn.execute(
                t.users.update().where(t.users.c.id == user_id).values(**values))
        return bool(result.rowcount)

    async def set_password_hash_if(self, user_id: str, old: str, new: str) -> None:
        """Upgrade a hash unless it changed meanwhile (no lost password change)."""
        async with self.db.write() as conn:
            await conn.execute(t.users.update().where(
                t.users.c.id == user_id, t.users.c.password_hash == old).values(
                password_hash=new))

    # -- sessions ------------------------------------------------------------------------

    async def insert_session(self, rec: SessionRecord, max_per_user: int | None,
                             now: float, last_seen: LastSeen | None = None) -> list[str]:
        """Store ``rec``; with a cap, evict the least recently used entries (sessions and
        token families) beyond it. Returns the evicted ``(kind, key)`` revocation keys."""
        async with self.db.write() as conn:
            await conn.execute(t.sessions.insert().values(
                id=rec.id, token_hash=rec.token_hash, user_id=rec.user_id,
                csrf_token=rec.csrf_token, created_at=rec.created_at,
                last_seen_at=rec.last_seen_at, expires_at=rec.expires_at, idle_ttl=rec.idle_ttl,
                remember=rec.remember, ip=rec.ip, user_agent=rec.user_agent))
            return await self._evict(conn, rec.user_id, max_per_user, now, last_seen)

    async def _evict(self, conn: Any, user_id: str, cap: int | None, now: float,
                     last_seen: LastSeen | None = None) -> list[str]:
        """Least recently used first. A session's stored last_seen_at is written at most
        every touch interval; ``last_seen`` (token hash → the engine's in-memory last use)
        supplies the real recency of sessions in active use."""
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
        evicted: list[str] = []
        for _, kind, row_id, key in entries[: max(0, len(entries) - cap)]:
            if kind == "session":
                await conn.execute(t.sessions.delete().where(t.sessions.c.id == row_id))
                evicted.append(f"session:{key}")
            else:
                await self._revoke_family(conn, row_id, now)
                evicted.append(f"family:{key}")
        await self._log(conn, evicted, now)
        return evicted

    async def get_session(self, token_hash: str) -> SessionRecord | None:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(t.sessions).where(
                t.sessions.c.token_hash == token_hash))).mappings().first()
        return _session(row) if row else None

    async def touch_session(self, session_id: str, at: float) -> None:
        async with self.db.write() as conn:
            await conn.execute(t.sessions.update().where(
                t.sessions.c.id == session_id, t.sessions.c.last_seen_at < at).values(
                last_seen_at=at))

    async def user_sessions(self, user_id: str, now: float) -> list[SessionRecord]:
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(t.sessions).where(
                t.sessions.c.user_id == user_id, t.sessions.c.expires_at > now).order_by(
                t.sessions.c.created_at))).mappings().all()
        return [rec for rec in map(_session, rows) if rec.alive_at(now)]

    async def delete_sessions(self, now: float, *, session_id: str | None = None,
                              user_id: str | None = None, token_hash: str | None = None,
                              keep: str | None = None) -> list[str]:
        """Delete the sessions that match every filter given (``keep``: a session ID spared);
        log and return their revocation keys."""
        where = _matching(t.sessions, id=session_id, user_id=user_id, token_hash=token_hash,
                          keep=keep)
        async with self.db.write() as conn:
            hashes = list((await conn.execute(
                sa.select(t.sessions.c.token_hash).where(where))).scalars())
            if hashes:
                await conn.execute(t.sessions.delete().where(where))
                keys = [f"session:{h}" for h in hashes]
                await self._log(conn, keys, now)
                return keys
        return []

    # -- token families and refresh tokens -----------------------------------------------

    async def create_family(self, fam: TokenFamily, refresh_hash: str, refresh_expires: float,
                            max_per_user: int | None, now: float,
                            last_seen: LastSeen | None = None) -> list[str]:
        async with self.db.write() as conn:
            await conn.execute(t.token_families.insert().values(
                id=fam.id, user_id=fam.user_id, scope=fam.scope, created_at=fam.created_at,
                last_seen_at=fam.last_seen_at, expires_at=fam.expires_at, ip=fam.ip,
                user_agent=fam.user_agent))
            await conn.execute(t.refresh_tokens.insert().values(
                token_hash=refresh_hash, family_id=fam.id, created_at=now,
                expires_at=refresh_expires))
            return await self._evict(conn, fam.user_id, max_per_user, now, last_seen)

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
                # _revoke_family does (family, then tokens): concurrent rotations and
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
                    await self._log(conn, [f"family:{fam.id}"], now)
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
                              user_id: str | None = None, keep: str | None = None) -> list[str]:
        """Revoke the live token families that match every filter given (``keep``: a family
        ID spared); log and return their revocation keys."""
        where = _matching(t.token_families, id=family_id, user_id=user_id, keep=keep)
        async with self.db.write() as conn:
            ids = list((await conn.execute(sa.select(t.token_families.c.id).where(
                where, t.token_families.c.revoked_at.is_(None)))).scalars())
            for fid in ids:
                await self._revoke_family(conn, fid, now)
            keys = [f"family:{fid}" for fid in ids]
            await self._log(conn, keys, now)
        return keys

    async def _revoke_family(self, conn: Any, family_id: str, now: float) -> None:
        await conn.execute(t.token_families.update().where(
            t.token_families.c.id == family_id).values(revoked_at=now))
        await conn.execute(t.refresh_tokens.delete().where(
            t.refresh_tokens.c.family_id == family_id))

    async def revoked_families_since(self, since: float) -> list[str]:
        """Families revoked after ``since``: their access tokens may still be unexpired."""
        async with self.db.read() as conn:
            return list((await conn.execute(sa.select(t.token_families.c.id).where(
                t.token_families.c.revoked_at > since))).scalars())

    # -- revocation: user cutoff, jti denylist, the event log ----------------------------

    async def cut_off_user(self, user_id: str, at: float, **values: Any) -> None:
        """Refuse the user's access tokens issued before ``at`` (and set ``values``)."""
        if "roles" in values:
            values["roles"] = json.dumps(list(values["roles"]))
        async with self.db.write() as conn:
            await conn.execute(t.users.update().where(t.users.c.id == user_id).values(
                tokens_valid_after=at, **values))
            await self._log(conn, [f"user:{user_id}"], at)

    async def deny_jti(self, jti: str, expires_at: float, now: float) -> bool:
        """Deny ``jti``; False (nothing written, nothing logged) when it is denied already,
        so a repeated revoke cannot grow the revocation log."""
        insert = (sqlite_insert if self.db.is_sqlite else pg_insert)(t.denied_jtis)
        async with self.db.write() as conn:
            added = await conn.execute(insert.values(jti=jti, expires_at=expires_at)
                                       .on_conflict_do_nothing(index_elements=["jti"]))
            if added.rowcount != 1:
                return False
            await self._log(conn, [f"jti:{jti}"], now)
        return True

    async def denied_jtis(self, now: float) -> list[tuple[str, float]]:
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(t.denied_jtis).where(
                t.denied_jtis.c.expires_at > now))).all()
        return [(r.jti, r.expires_at) for r in rows]

    async def _log(self, conn: Any, keys: Sequence[str], now: float) -> None:
        if keys:
            await conn.execute(t.revocations.insert(), [
                {"kind": k.split(":", 1)[0], "key": k.split(":", 1)[1], "at": now}
                for k in keys])
            if not self.db.is_sqlite:  # delivered at commit to every LISTENing process
                for payload in batches(list(keys), 7000):
                    await conn.execute(sa.select(sa.func.pg_notify(CHANNEL, payload)))

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
        return int(await self.server_secret("redis_epoch", "0"))

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
            await self._log(conn, [f"redis:{epoch}"], now)
        return epoch

    # -- keys and secrets ----------------------------------------------------------------

    async def signing_keys(self) -> list[RowMapping]:
        async with self.db.read() as conn:
            return list((await conn.execute(sa.select(t.signing_keys).order_by(
                t.signing_keys.c.created_at))).mappings().all())

    async def insert_key(self, **values: Any) -> None:
        async with self.db.write() as conn:
            await conn.execute(t.signing_keys.insert().values(**values))

    async def insert_first_key(self, alg: str, values: dict[str, Any]) -> None:
        """Insert ``values`` unless a usable key for ``alg`` exists: instances starting at
        once on an empty database agree on one key."""
        async with self.db.write() as conn:
            if not self.db.is_sqlite:
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(727262)"))
            exists = (await conn.execute(sa.select(t.signing_keys.c.kid).where(
                t.signing_keys.c.alg == alg, t.signing_keys.c.retired_at.is_(None)))).first()
            if exists is None:
                await conn.execute(t.signing_keys.insert().values(**values))

    async def update_key(self, kid: str, **values: Any) -> None:
        async with self.db.write() as conn:
            await conn.execute(t.signing_keys.update().where(
                t.signing_keys.c.kid == kid).values(**values))

    async def server_secret(self, name: str, make: str) -> str:
        """The stored secret ``name``, created as ``make`` if absent (first writer wins)."""
        async with self.db.write() as conn:
            value = (await conn.execute(sa.select(t.server_secrets.c.value).where(
                t.server_secrets.c.name == name))).scalar()
            if value is None:
                await conn.execute(t.server_secrets.insert().values(name=name, value=make))
                value = make
        return str(value)

    # -- housekeeping --------------------------------------------------------------------

    async def purge(self, now: float, keep_log: float = 3600.0) -> dict[str, int]:
        """Delete expired sessions, refresh tokens, families, denylist entries and old log."""
        counts: dict[str, int] = {}
        async with self.db.write() as conn:
            counts["sessions"] = (await conn.execute(t.sessions.delete().where(sa.or_(
                t.sessions.c.expires_at <= now,
                t.sessions.c.last_seen_at + t.sessions.c.idle_ttl <= now)))).rowcount
            counts["refresh_tokens"] = (await conn.execute(t.refresh_tokens.delete().where(
                t.refresh_tokens.c.expires_at <= now))).rowcount
            counts["token_families"] = (await conn.execute(t.token_families.delete().where(
                t.token_families.c.expires_at <= now))).rowcount
            counts["denied_jtis"] = (await conn.execute(t.denied_jtis.delete().where(
                t.denied_jtis.c.expires_at <= now))).rowcount
            await conn.execute(t.revocations.delete().where(t.revocations.c.at < now - keep_log))
        return counts


def _matching(table: sa.Table, *, keep: str | None, **columns: str | None) -> Any:
    """``column = value`` for every value given, and ``id != keep``; at least one filter, so a
    forgotten argument can never match every row."""
    clauses = [table.c[name] == value for name, value in columns.items() if value is not None]
    if not clauses:
        raise ValueError("refusing to match every row")
    if keep is not None:
        clauses.append(table.c.id != keep)
    return sa.and_(*clauses)
