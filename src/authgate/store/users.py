"""User records: accounts, their password hashes and roles, and the per-user token cutoff."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from authgate.errors import EmailTaken, UsernameTaken
from authgate.models import Revocation, User
from authgate.store import schema as t
from authgate.store.shared import SqlArea


def username_key(username: str) -> str:
    """What makes two usernames the same account (NFKC, case-folded)."""
    return unicodedata.normalize("NFKC", username).casefold()


def _user(row: RowMapping) -> User:
    return User(
        id=row["id"], username=row["username"], roles=tuple(json.loads(row["roles"])),
        disabled=bool(row["disabled"]), created_at=row["created_at"],
        tokens_valid_after=row["tokens_valid_after"], email=row["email"],
        email_verified=bool(row["email_verified"]),
    )


def email_key(email: str) -> str:
    """What makes two addresses the same (the normalised address, case-folded)."""
    return unicodedata.normalize("NFKC", email).casefold()


def _columns(values: dict[str, Any]) -> dict[str, Any]:
    if "roles" in values:
        values["roles"] = json.dumps(list(values["roles"]))
    if "email" in values:
        values["email_key"] = email_key(values["email"]) if values["email"] else None
    return values


def _taken(exc: IntegrityError) -> Exception:
    return EmailTaken() if "email" in str(exc.orig).lower() else UsernameTaken()


class UserRecords(SqlArea):
    async def create_user(self, user: User, password_hash: str) -> User:
        try:
            async with self.db.write() as conn:
                await conn.execute(t.users.insert().values(
                    id=user.id, username=user.username, username_key=username_key(user.username),
                    password_hash=password_hash, roles=json.dumps(list(user.roles)),
                    disabled=user.disabled, created_at=user.created_at,
                    tokens_valid_after=user.tokens_valid_after, email=user.email,
                    email_key=email_key(user.email) if user.email else None,
                    email_verified=user.email_verified,
                ))
        except IntegrityError as exc:
            raise _taken(exc) from None
        return user

    async def user_with_hash(self, username: str) -> tuple[User, str] | None:
        """The user named ``username``, or (failing that, for a name with an ``@``) the user
        with that address; with the password hash."""
        key = username_key(username)
        where = t.users.c.username_key == key
        if "@" in username:
            where = sa.or_(where, t.users.c.email_key == email_key(username))
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(t.users).where(where))).mappings().all()
        rows = sorted(rows, key=lambda r: r["username_key"] != key)  # the username first
        return (_user(rows[0]), rows[0]["password_hash"]) if rows else None

    async def user_by_email(self, email: str) -> User | None:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(t.users).where(
                t.users.c.email_key == email_key(email)))).mappings().first()
        return _user(row) if row else None

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

    async def search_users(self, query: str = "", after: str | None = None,
                           limit: int = 50) -> list[tuple[str, User]]:
        """Up to ``limit`` users ordered by their username key, after the key ``after``
        (keyset pagination), whose username or address contains ``query`` (compared as
        keys: NFKC, case-folded); with each user's key (the next page's ``after``)."""
        u = t.users
        select = sa.select(u).order_by(u.c.username_key).limit(limit)
        if query:
            key = username_key(query)
            select = select.where(sa.or_(u.c.username_key.contains(key, autoescape=True),
                                         u.c.email_key.contains(email_key(query),
                                                                autoescape=True)))
        if after is not None:
            select = select.where(u.c.username_key > after)
        async with self.db.read() as conn:
            rows = (await conn.execute(select)).mappings().all()
        return [(r["username_key"], _user(r)) for r in rows]

    async def update_user(self, user_id: str, *, logged_at: float | None = None,
                          **values: Any) -> bool:
        """Set ``values``; with ``logged_at``, log ``user:<id>`` in the same transaction
        (every process drops its cached copy of the user, even one that missed the bus)."""
        try:
            async with self.db.write() as conn:
                result = await conn.execute(
                    t.users.update().where(t.users.c.id == user_id).values(**_columns(values)))
                if logged_at is not None and result.rowcount:
                    await self._log(conn, [Revocation("user", user_id)], logged_at)
        except IntegrityError as exc:
            raise _taken(exc) from None
        return bool(result.rowcount)

    async def delete_user(self, user_id: str, logged_at: float | None = None) -> bool:
        """Delete the user and (by cascade) everything they hold, and the mails not yet sent
        to their addresses (a deleted account gets no more mail); with ``logged_at``, log
        ``user:<id>`` in the same transaction (a process that cached the user between the
        caller's earlier revocations and this delete drops it, even without a bus: else
        its cached API keys would outlive their user there)."""
        async with self.db.write() as conn:
            addresses = {a for a in (await conn.execute(sa.union(
                sa.select(t.users.c.email).where(t.users.c.id == user_id),
                sa.select(t.mail_tokens.c.email).where(t.mail_tokens.c.user_id == user_id)))
            ).scalars() if a}
            if addresses:
                await conn.execute(t.mail_outbox.delete().where(
                    t.mail_outbox.c.to_addr.in_(addresses),
                    t.mail_outbox.c.delivered_at.is_(None)))
            result = await conn.execute(t.users.delete().where(t.users.c.id == user_id))
            if logged_at is not None and result.rowcount:
                await self._log(conn, [Revocation("user", user_id)], logged_at)
        return bool(result.rowcount)

    async def set_password_hash_if(self, user_id: str, old: str, new: str) -> None:
        """Upgrade a hash unless it changed meanwhile (no lost password change)."""
        async with self.db.write() as conn:
            await conn.execute(t.users.update().where(
                t.users.c.id == user_id, t.users.c.password_hash == old).values(
                password_hash=new))

    async def cut_off_user(self, user_id: str, at: float, **values: Any) -> None:
        """Refuse the user's access tokens issued before ``at`` (and set ``values``), logged
        as a revocation."""
        async with self.db.write() as conn:
            await conn.execute(t.users.update().where(t.users.c.id == user_id).values(
                tokens_valid_after=at, **_columns(values)))
            await self._log(conn, [Revocation("user", user_id)], at)
