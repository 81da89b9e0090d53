"""Redis for hot state shared by every instance (``AUTHGATE_REDIS_URL``), via redis-py
asyncio: :class:`RedisBackend` owns the connections and composes

* the revocation fan-out (:class:`~authgate.store.redis_bus.RedisBus`), published with the
  tombstones of revoked sessions in one round trip;
* the session cache (:class:`~authgate.store.redis_sessions.RedisSessions`). The database
  stays the source of truth: when a tombstone may be missing (a revocation's Redis write
  failed, or Redis came back from an outage, possibly from an older snapshot), the process
  bumps the cache *epoch* in the database, logged like a revocation, so every process stops
  trusting every entry written before within a poll;
* the login throttle counters use its client (:mod:`authgate.store.redis_throttle`).

Fail closed: Redis is pinged every ``ping_interval``; if it cannot be reached, the hot state
is marked stale and protected requests get 503 until it returns (then this process drops its
caches, since it may have missed messages).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from authgate.clock import Clock
from authgate.errors import BackendUnavailable
from authgate.hotstate import HotState
from authgate.models import Revocation, SessionRecord
from authgate.store.redis_bus import RedisBus
from authgate.store.redis_sessions import RedisSessions
from authgate.tasks import cancel

log = logging.getLogger("authgate")


class RedisBackend:
    def __init__(self, url: str, hot: HotState, clock: Clock, prefix: str = "authgate",
                 ping_interval: float = 0.25) -> None:
        # A bounded pool that makes a burst wait for a connection instead of opening
        # hundreds; a slow answer under load is not an outage (the ping loop decides that).
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=64, timeout=5, socket_timeout=5, socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 1))  # a pooled connection that died: once more, afresh
        self.client: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        # Liveness has its own connection, so a busy pool cannot pass for an outage.
        self._pinger: aioredis.Redis = aioredis.Redis(
            connection_pool=aioredis.BlockingConnectionPool.from_url(
                url, max_connections=1, timeout=1, socket_timeout=1, socket_connect_timeout=1))
        self.hot = hot
        self.clock = clock
        self.prefix = prefix
        self.channel = f"{prefix}:revocations"
        self.ping_interval = ping_interval
        self.sessions = RedisSessions(self.client, prefix, lambda: hot.redis_epoch)
        self.bus = RedisBus(self.client, self.channel, hot.receive, on_error=self._went_down,
                            retry_after=ping_interval)
        self._tasks: list[asyncio.Task[None]] = []
        self._down = False

    async def start(self) -> None:
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            raise BackendUnavailable(f"cannot reach Redis: {exc}") from None
        # After the watcher's cursor is set (HotState.start): a later bump is in the log.
        self.hot.redis_epoch = max(self.hot.redis_epoch, await self.hot.records.redis_epoch())
        self.hot.add_source("redis", self._check)
        await self.bus.start()
        self._tasks = [asyncio.create_task(self._ping(), name="authgate-redis-ping")]

    async def stop(self) -> None:
        await self.bus.stop()
        await cancel(*self._tasks)
        await self.client.aclose()
        await self._pinger.aclose()

    # -- fan-out --------------------------------------------------------------------------

    async def publish(self, events: Sequence[Revocation]) -> None:
        if not events:
            return
        ends_sessions = any(e.kind == "session" for e in events)
        try:
            if not self._tasks and ends_sessions:
                # Not started (the CLI): learn the epoch the servers use for tombstones.
                self.hot.redis_epoch = max(self.hot.redis_epoch,
                                           await self.hot.records.redis_epoch())
            async with self.client.pipeline(transaction=False) as pipe:
                self.sessions.queue_tombstones(pipe, events)
                self.bus.queue(pipe, events)
                await pipe.execute()
        except (RedisError, OSError):
            # Peers still learn it from the database log within a poll interval; this
            # process marks itself stale so it cannot promise more than it can keep.
            self._went_down()
            if ends_sessions:
                # The tombstone is missing: the session entry in Redis (which may persist
                # and come back) must not be trusted by anyone any more.
                await self._new_epoch("a revocation could not reach Redis")

    # -- liveness and the cache epoch -----------------------------------------------------

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            await self._check()

    async def _check(self) -> None:
        """Ping Redis; mark the hot state fresh, or note the outage."""
        try:
            await self._pinger.ping()
        except (RedisError, OSError):
            self._went_down()
            return
        if self._down:
            # Tombstones may have been lost meanwhile (a restart from an older snapshot, a
            # peer that died before its epoch bump): disown every entry before trusting
            # Redis again. Until the database takes the new epoch, stay stale (503).
            if not await self._new_epoch("Redis was unreachable"):
                return
            log.warning("Redis reachable again")
            self._down = False
            self.hot.sessions.clear()  # messages may have been missed meanwhile
            self.hot.users.clear()
        self.hot.mark_fresh("redis")

    async def _new_epoch(self, why: str) -> bool:
        try:
            epoch = await self.hot.records.bump_redis_epoch(self.clock.now())
        except BackendUnavailable:
            log.error("%s and the database is unavailable: Redis session entries stay "
                      "distrusted until both are back", why)
            return False
        self.hot.apply(Revocation("redis", str(epoch)))
        log.warning("%s: Redis session cache epoch is now %d", why, epoch)
        return True

    def _went_down(self) -> None:
        if not self._down:
            log.error("Redis unreachable: failing closed (503) until it returns")
            self._down = True

    # -- session lookups (see RedisSessions) ----------------------------------------------

    async def get_session(self, token_hash: str) -> SessionRecord | bool | None:
        return await self.sessions.get_session(token_hash)

    async def put_session(self, rec: SessionRecord, now: float) -> None:
        await self.sessions.put_session(rec, now)
