"""Passkey records: WebAuthn credentials (public keys, counters, names) and the short-lived,
single-use challenges of their ceremonies (only the challenge's SHA-256)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from authgate.store import schema as t
from authgate.store.shared import SqlArea

MAX_PASSKEYS_PER_USER = 20


@dataclass(frozen=True, slots=True)
class Passkey:
    id: str
    user_id: str
    credential_id: str  # base64url
    public_key: str  # base64url COSE key
    sign_count: int
    transports: tuple[str, ...]
    name: str
    aaguid: str
    backup_eligible: bool
    backed_up: bool
    created_at: float
    last_used_at: float | None


@dataclass(frozen=True, slots=True)
class PasskeyChallenge:
    challenge_hash: str
    purpose: str  # register | login | mfa
    binding: str
    user_id: str | None
    expires_at: float


def _passkey(row: Any) -> Passkey:
    return Passkey(id=row["id"], user_id=row["user_id"], credential_id=row["credential_id"],
                   public_key=row["public_key"], sign_count=int(row["sign_count"]),
                   transports=tuple(orjson.loads(row["transports"])), name=row["name"],
                   aaguid=row["aaguid"], backup_eligible=bool(row["backup_eligible"]),
                   backed_up=bool(row["backed_up"]), created_at=row["created_at"],
                   last_used_at=row["last_used_at"])


class PasskeyRecords(SqlArea):
    """One short transaction per method, like every record area."""

    async def add_passkey(self, key: Passkey) -> bool:
        """Store a new credential; False when its credential ID is registered already (to
        anyone) or the user has :data:`MAX_PASSKEYS_PER_USER`."""
        pk = t.passkeys
        async with self.db.write() as conn:
            taken = (await conn.execute(sa.select(pk.c.id).where(
                pk.c.credential_id == key.credential_id))).first()
            count = (await conn.execute(sa.select(sa.func.count()).select_from(pk).where(
                pk.c.user_id == key.user_id))).scalar_one()
            if taken is not None or int(count) >= MAX_PASSKEYS_PER_USER:
                return False
            await conn.execute(pk.insert().values(
                id=key.id, user_id=key.user_id, credential_id=key.credential_id,
                public_key=key.public_key, sign_count=key.sign_count,
                transports=orjson.dumps(list(key.transports)).decode(), name=key.name,
                aaguid=key.aaguid, backup_eligible=key.backup_eligible,
                backed_up=key.backed_up, created_at=key.created_at,
                last_used_at=key.last_used_at))
        return True

    async def user_passkeys(self, user_id: str) -> list[Passkey]:
        """The user's passkeys, oldest first."""
        pk = t.passkeys
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(pk).where(pk.c.user_id == user_id).order_by(
                pk.c.created_at, pk.c.id))).mappings().all()
        return [_passkey(r) for r in rows]

    async def count_passkeys(self, user_id: str) -> int:
        pk = t.passkeys
        async with self.db.read() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(pk).where(
                pk.c.user_id == user_id))).scalar_one())

    async def passkey_by_credential(self, credential_id: str) -> Passkey | None:
        pk = t.passkeys
        async with self.db.read() as conn:
            row = (await conn.execute(sa.select(pk).where(
                pk.c.credential_id == credential_id))).mappings().first()
        return _passkey(row) if row is not None else None

    async def rename_passkey(self, user_id: str, passkey_id: str, name: str) -> bool:
        pk = t.passkeys
        async with self.db.write() as conn:
            done = await conn.execute(pk.update().where(
                pk.c.id == passkey_id, pk.c.user_id == user_id).values(name=name))
        return bool(done.rowcount)

    async def delete_passkey(self, user_id: str, passkey_id: str) -> Passkey | None:
        """Delete one of the user's passkeys; the deleted record, or None."""
        pk = t.passkeys
        async with self.db.write() as conn:
            row = (await conn.execute(sa.select(pk).where(
                pk.c.id == passkey_id, pk.c.user_id == user_id))).mappings().first()
            if row is None:
                return None
            await conn.execute(pk.delete().where(pk.c.id == passkey_id))
        return _passkey(row)

    async def delete_user_passkeys(self, user_id: str) -> list[Passkey]:
        """Delete every passkey of the user; the deleted records."""
        pk = t.passkeys
        async with self.db.write() as conn:
            rows = (await conn.execute(sa.select(pk).where(pk.c.user_id == user_id))
                    ).mappings().all()
            await conn.execute(pk.delete().where(pk.c.user_id == user_id))
        return [_passkey(row) for row in rows]

    async def use_passkey(self, passkey_id: str, old_count: int, new_count: int,
                          backed_up: bool, now: float) -> bool:
        """Record a use: the new counter, only if the stored one is still ``old_count`` (of
        two parallel uses with the same counter, one wins), and the backup state."""
        pk = t.passkeys
        async with self.db.write() as conn:
            done = await conn.execute(pk.update().where(
                pk.c.id == passkey_id, pk.c.sign_count == old_count).values(
                sign_count=new_count, backed_up=backed_up, last_used_at=now))
        return bool(done.rowcount)

    async def put_challenge(self, challenge: PasskeyChallenge, now: float) -> None:
        pc = t.passkey_challenges
        async with self.db.write() as conn:
            await conn.execute(pc.delete().where(pc.c.expires_at <= now))
            await conn.execute(pc.insert().values(
                challenge_hash=challenge.challenge_hash, purpose=challenge.purpose,
                binding=challenge.binding, user_id=challenge.user_id,
                expires_at=challenge.expires_at))

    async def spend_challenge(self, challenge_hash: str, expires_at: float, now: float
                              ) -> bool:
        """Record a stateless (MAC-checked) challenge as used until ``expires_at``; False
        when it was used before (a replay): the unique key decides, across workers."""
        pc = t.passkey_challenges
        try:
            async with self.db.write() as conn:
                await conn.execute(pc.delete().where(pc.c.expires_at <= now))
                await conn.execute(pc.insert().values(
                    challenge_hash=challenge_hash, purpose="spent", binding="",
                    user_id=None, expires_at=expires_at))
        except sa.exc.IntegrityError:
            return False
        return True

    async def take_challenge(self, challenge_hash: str, purpose: str, binding: str,
                             now: float) -> PasskeyChallenge | None:
        """Use up a challenge (whoever presents it: it is gone after this) and return it
        when it is of ``purpose``, bound to ``binding`` and unexpired; atomic, so of two
        requests carrying it at most one gets it. None otherwise."""
        pc = t.passkey_challenges
        async with self.db.write() as conn:
            row = (await conn.execute(sa.select(pc).where(
                pc.c.challenge_hash == challenge_hash))).mappings().first()
            if row is None:
                return None
            # used up by whoever presents it first, right or wrong
            done = await conn.execute(pc.delete().where(pc.c.challenge_hash == challenge_hash))
            if not done.rowcount or row["expires_at"] <= now or row["purpose"] != purpose \
                    or row["binding"] != binding:
                return None
        return PasskeyChallenge(challenge_hash=row["challenge_hash"], purpose=row["purpose"],
                                binding=row["binding"], user_id=row["user_id"],
                                expires_at=row["expires_at"])
