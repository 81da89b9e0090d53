"""Second-factor records: TOTP factors (secret encrypted by the caller), recovery codes (only
their HMAC), and pending sign-ins waiting for a second factor (only the SHA-256 of the
``mfa_token``)."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import sqlalchemy as sa

from authgate.store import schema as t
from authgate.store.shared import SqlArea


@dataclass(frozen=True, slots=True)
class TotpFactor:
    user_id: str
    secret_enc: str
    confirmed: bool
    last_step: int
    created_at: float


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    token_hash: str
    user_id: str
    first_factor: str
    data: dict[str, object]
    expires_at: float
    failures: int


class FactorRecords(SqlArea):
    """One short transaction per method, like every record area."""

    async def totp_factor(self, user_id: str) -> TotpFactor | None:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(t.mfa_totp).where(
                t.mfa_totp.c.user_id == user_id))).mappings().first()
        if row is None:
            return None
        return TotpFactor(user_id=row["user_id"], secret_enc=row["secret_enc"],
                          confirmed=bool(row["confirmed"]), last_step=int(row["last_step"]),
                          created_at=row["created_at"])

    async def put_unconfirmed_totp(self, user_id: str, secret_enc: str, now: float) -> bool:
        """Store (or replace) an unconfirmed factor; False when a confirmed one exists."""
        tt = t.mfa_totp
        async with self.db.write() as conn:
            row = (await conn.execute(sa.select(tt.c.confirmed).where(
                tt.c.user_id == user_id))).first()
            if row is not None and row.confirmed:
                return False
            if row is not None:
                await conn.execute(tt.delete().where(tt.c.user_id == user_id))
            await conn.execute(tt.insert().values(user_id=user_id, secret_enc=secret_enc,
                                                  confirmed=False, last_step=0,
                                                  created_at=now))
        return True

    async def accept_step(self, user_id: str, step: int) -> bool:
        """Record ``step`` as the last accepted one unless it (or a later one) was accepted
        before: the replay check, atomic across workers."""
        tt = t.mfa_totp
        async with self.db.write() as conn:
            done = await conn.execute(tt.update().where(
                tt.c.user_id == user_id, tt.c.last_step < step).values(last_step=step))
        return bool(done.rowcount)

    async def confirm_totp(self, user_id: str, code_hashes: list[str], now: float) -> bool:
        """Make the factor active and store its recovery codes (replacing any); False when
        there is no unconfirmed factor."""
        tt, rc = t.mfa_totp, t.mfa_recovery_codes
        async with self.db.write() as conn:
            done = await conn.execute(tt.update().where(
                tt.c.user_id == user_id, tt.c.confirmed.is_(False)).values(confirmed=True))
            if not done.rowcount:
                return False
            await conn.execute(rc.delete().where(rc.c.user_id == user_id))
            await conn.execute(rc.insert(), [
                {"code_hash": h, "user_id": user_id, "created_at": now} for h in code_hashes])
        return True

    async def delete_factors(self, user_id: str) -> bool:
        """Remove the TOTP factor, its recovery codes and pending sign-ins."""
        async with self.db.write() as conn:
            done = await conn.execute(t.mfa_totp.delete().where(
                t.mfa_totp.c.user_id == user_id))
            await conn.execute(t.mfa_recovery_codes.delete().where(
                t.mfa_recovery_codes.c.user_id == user_id))
            await conn.execute(t.mfa_pending.delete().where(
                t.mfa_pending.c.user_id == user_id))
        return bool(done.rowcount)

    async def use_recovery_code(self, user_id: str, code_hash: str, now: float) -> int | None:
        """Spend one unused recovery code; the number left, or None when it is not one."""
        rc = t.mfa_recovery_codes
        async with self.db.write() as conn:
            done = await conn.execute(rc.update().where(
                rc.c.user_id == user_id, rc.c.code_hash == code_hash,
                rc.c.used_at.is_(None)).values(used_at=now))
            if not done.rowcount:
                return None
            left = await conn.execute(sa.select(sa.func.count()).select_from(rc).where(
                rc.c.user_id == user_id, rc.c.used_at.is_(None)))
            return int(left.scalar_one())

    async def recovery_codes_left(self, user_id: str) -> int:
        rc = t.mfa_recovery_codes
        async with self.db.read() as conn:
            left = await conn.execute(sa.select(sa.func.count()).select_from(rc).where(
                rc.c.user_id == user_id, rc.c.used_at.is_(None)))
            return int(left.scalar_one())

    async def insert_pending(self, pending: PendingSignIn, now: float) -> None:
        mp = t.mfa_pending
        async with self.db.write() as conn:
            await conn.execute(mp.delete().where(mp.c.expires_at <= now))
            await conn.execute(mp.insert().values(
                token_hash=pending.token_hash, user_id=pending.user_id,
                first_factor=pending.first_factor, data=orjson.dumps(pending.data).decode(),
                expires_at=pending.expires_at, failures=0))

    async def get_pending(self, token_hash: str) -> PendingSignIn | None:
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(t.mfa_pending).where(
                t.mfa_pending.c.token_hash == token_hash))).mappings().first()
        if row is None:
            return None
        return PendingSignIn(token_hash=row["token_hash"], user_id=row["user_id"],
                             first_factor=row["first_factor"], data=orjson.loads(row["data"]),
                             expires_at=row["expires_at"], failures=int(row["failures"]))

    async def fail_pending(self, token_hash: str, max_failures: int) -> int:
        """Count one wrong code; at ``max_failures`` the pending sign-in is deleted. Returns
        the failures counted."""
        mp = t.mfa_pending
        async with self.db.write() as conn:
            row = (await conn.execute(mp.update().where(mp.c.token_hash == token_hash).values(
                failures=mp.c.failures + 1).returning(mp.c.failures))).first()
            failures = int(row.failures) if row is not None else max_failures
            if failures >= max_failures:
                await conn.execute(mp.delete().where(mp.c.token_hash == token_hash))
        return failures

    async def take_pending(self, token_hash: str) -> bool:
        """Delete a pending sign-in that completed; False when another request did first."""
        async with self.db.write() as conn:
            done = await conn.execute(t.mfa_pending.delete().where(
                t.mfa_pending.c.token_hash == token_hash))
        return bool(done.rowcount)
