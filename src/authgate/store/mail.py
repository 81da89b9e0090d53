"""Mail tokens (stored only as SHA-256, single use) and the mails that carry them, written
to the mail outbox in the same transaction."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from authgate.store import schema as t
from authgate.store.shared import SqlArea


@dataclass(frozen=True, slots=True)
class MailToken:
    """A mail token as stored (the hash, never the token)."""

    token_hash: str
    user_id: str
    purpose: str  # verify | change | reset
    email: str
    created_at: float
    expires_at: float
    used_at: float | None = None


@dataclass(frozen=True, slots=True)
class Mail:
    """One mail to queue: a template, its context, and (encrypted) the token it carries."""

    to: str
    template: str
    context: dict[str, Any] = field(default_factory=dict)
    secret: str | None = None  # already encrypted


def _token(row: Any) -> MailToken:
    return MailToken(row["token_hash"], row["user_id"], row["purpose"], row["email"],
                     row["created_at"], row["expires_at"], row["used_at"])


class MailRecords(SqlArea):
    async def queue_mail(self, mails: list[Mail], now: float, token: MailToken | None = None,
                         *, replaces: str | None = None) -> None:
        """In one transaction: end the user's unused tokens of purpose ``replaces``, store
        ``token`` and queue ``mails``."""
        async with self.db.write() as conn:
            if token is not None and replaces is not None:
                await _end_tokens(conn, token.user_id, replaces, now)
            if token is not None:
                await conn.execute(t.mail_tokens.insert().values(
                    token_hash=token.token_hash, user_id=token.user_id, purpose=token.purpose,
                    email=token.email, created_at=token.created_at,
                    expires_at=token.expires_at))
            if mails:
                await conn.execute(t.mail_outbox.insert(), [
                    {"id": f"mail_{secrets.token_urlsafe(18)}", "to_addr": m.to,
                     "template": m.template, "context": json.dumps(m.context),
                     "secret": m.secret, "created_at": now, "next_attempt_at": now}
                    for m in mails])

    async def same_work(self, now: float) -> None:
        """What :meth:`queue_mail` costs, changing nothing (forgot-password for an address
        nobody has: the same time as for one somebody has)."""
        async with self.db.write() as conn:
            await _end_tokens(conn, "", "reset", now)
            await conn.execute(sa.select(sa.func.count()).select_from(t.mail_outbox).where(
                t.mail_outbox.c.id == ""))

    async def mail_token(self, token_hash: str) -> MailToken | None:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(t.mail_tokens).where(
                t.mail_tokens.c.token_hash == token_hash))).mappings().first()
        return _token(row) if row else None

    async def use_mail_token(self, token_hash: str, purposes: tuple[str, ...],
                             now: float) -> MailToken | None:
        """Mark the token used, if it is unused, unexpired and of one of ``purposes``; of
        two concurrent uses exactly one gets it. None when it cannot be used."""
        m = t.mail_tokens
        async with self.db.write() as conn:
            done = await conn.execute(m.update().where(
                m.c.token_hash == token_hash, m.c.used_at.is_(None), m.c.expires_at > now,
                m.c.purpose.in_(purposes)).values(used_at=now))
            if not done.rowcount:
                return None
            row = (await conn.execute(sa.select(m).where(m.c.token_hash == token_hash))
                   ).mappings().first()
        return _token(row) if row else None

    async def end_mail_tokens(self, user_id: str, purpose: str, now: float) -> None:
        async with self.db.write() as conn:
            await _end_tokens(conn, user_id, purpose, now)

    async def purge_mail_tokens(self, now: float) -> int:
        async with self.db.write() as conn:
            done = await conn.execute(t.mail_tokens.delete().where(
                sa.or_(t.mail_tokens.c.expires_at <= now, t.mail_tokens.c.used_at.is_not(None))))
        return int(done.rowcount)


async def _end_tokens(conn: AsyncConnection, user_id: str, purpose: str, now: float) -> None:
    m = t.mail_tokens
    await conn.execute(m.update().where(
        m.c.user_id == user_id, m.c.purpose == purpose, m.c.used_at.is_(None)).values(
        used_at=now))
