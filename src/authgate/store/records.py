"""Durable records on SQLite or PostgreSQL: :class:`Records` is the one object callers get,
composed of one class per area (each in its own module, each method one short transaction).
No SQLAlchemy expression leaves these modules: callers name what they mean
(``delete_sessions(now, user_id=..., keep=...)``)."""

from __future__ import annotations

import sqlalchemy as sa

from authgate.store import schema as t
from authgate.store.api_keys import ApiKeyRecords
from authgate.store.factors import FactorRecords
from authgate.store.mail import MailRecords
from authgate.store.passkeys import PasskeyRecords
from authgate.store.revlog import RevocationLogRecords
from authgate.store.sessions import SessionRecords
from authgate.store.shared import LastSeen
from authgate.store.signing_keys import KeyRecords
from authgate.store.token_families import TokenRecords
from authgate.store.users import UserRecords, username_key

__all__ = ["LastSeen", "Records", "username_key"]


class Records(UserRecords, SessionRecords, TokenRecords, KeyRecords, RevocationLogRecords,
              FactorRecords, PasskeyRecords, MailRecords, ApiKeyRecords):
    """The engine's durable state: users, sessions, token families and refresh tokens, the
    ``jti`` denylist, signing keys and secrets, the revocation log, API keys; and their
    purge."""

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
            counts["mfa_pending"] = (await conn.execute(t.mfa_pending.delete().where(
                t.mfa_pending.c.expires_at <= now))).rowcount
            counts["passkey_challenges"] = (await conn.execute(
                t.passkey_challenges.delete().where(
                    t.passkey_challenges.c.expires_at <= now))).rowcount
            await conn.execute(t.revocations.delete().where(t.revocations.c.at < now - keep_log))
        counts["mail_tokens"] = await self.purge_mail_tokens(now)
        counts["api_keys"] = await self.purge_api_keys(now, keep_log)
        return counts
