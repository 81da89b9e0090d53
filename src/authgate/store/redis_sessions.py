"""The Redis session cache: a process that has not seen a session yet reads it here before
the database.

A revoked session leaves a tombstone (not a deletion) so that a reader which fetched the
record just before the revocation cannot write it back (``SET NX``). Entries live under an
*epoch* the database holds (``Records.redis_epoch``): when a tombstone may be missing, a new
epoch disowns every entry written before (see :mod:`authgate.store.redis_backend`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from authgate.models import Revocation, SessionRecord

TOMBSTONE = b"-"
TOMBSTONE_TTL = 300
SESSION_CACHE_TTL = 86400


class RedisSessions:
    """Session records by token hash, under ``<prefix>:sess:<epoch>:``."""

    def __init__(self, client: aioredis.Redis, prefix: str, epoch: Callable[[], int]) -> None:
        self.client = client
        self.prefix = prefix
        self.epoch = epoch

    def key(self, token_hash: str) -> str:
        return f"{self.prefix}:sess:{self.epoch()}:{token_hash}"

    async def get_session(self, token_hash: str) -> SessionRecord | bool | None:
        """The cached record, ``False`` for a tombstone (revoked), ``None`` when unknown or
        when Redis did not answer (the database, which is authoritative, is asked then;
        whether revocations still arrive is the ping loop's call)."""
        try:
            raw = await self.client.get(self.key(token_hash))
        except (RedisError, OSError):
            return None
        if raw is None:
            return None
        if raw == TOMBSTONE:
            return False
        return SessionRecord(**orjson.loads(raw))

    async def put_session(self, rec: SessionRecord, now: float) -> None:
        # At most a day: entries of a disowned epoch are garbage until they expire.
        ttl = min(math.ceil(rec.deadline() - now), SESSION_CACHE_TTL)
        if ttl <= 0:
            return
        data = orjson.dumps({f: getattr(rec, f) for f in SessionRecord.__slots__})
        with contextlib.suppress(RedisError, OSError):  # only a cache fill
            await self.client.set(self.key(rec.token_hash), data, ex=ttl, nx=True)

    async def revoke_sessions(self, token_hashes: Iterable[str]) -> None:
        """Tombstone these sessions (raises when Redis cannot be reached: the caller must
        then disown the epoch)."""
        async with self.client.pipeline(transaction=False) as pipe:
            self.queue_tombstones(pipe, [Revocation("session", h) for h in token_hashes])
            await pipe.execute()

    def queue_tombstones(self, pipe: Pipeline, events: Iterable[Revocation]) -> None:
        """Add the tombstones of the sessions among ``events``."""
        for event in events:
            if event.kind == "session":
                pipe.set(self.key(event.value), TOMBSTONE, ex=TOMBSTONE_TTL)
