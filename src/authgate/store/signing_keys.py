"""Signing keys (private keys at rest, retired and dropped on rotation) and the server's
named secrets (CSRF key, cache epochs)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from authgate.store import schema as t
from authgate.store.db import Database
from authgate.store.shared import SqlArea


class KeyRecords(SqlArea):
    async def signing_keys(self) -> list[dict[str, Any]]:
        """Every stored key row (oldest first), as column → value."""
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(t.signing_keys).order_by(
                t.signing_keys.c.created_at))).mappings().all()
        return [dict(row) for row in rows]

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
        return await server_secret(self.db, name, make)


async def server_secret(db: Database, name: str, make: str) -> str:
    async with db.write() as conn:
        value = (await conn.execute(sa.select(t.server_secrets.c.value).where(
            t.server_secrets.c.name == name))).scalar()
        if value is None:
            await conn.execute(t.server_secrets.insert().values(name=name, value=make))
            value = make
    return str(value)
