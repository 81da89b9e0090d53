"""Redis for hot state shared by every instance (``AUTHGATE_REDIS_URL``), via redis-py asyncio.

* **Revocation fan-out**: every revocation is published on one channel; each process applies
  it to its in-memory state within milliseconds. (The database log stays the durable
  backstop, tailed every ``REVOCATION_POLL_INTERVAL``.)
* **Session lookups**: a process that has not seen a session yet reads it from Redis before
  the database. A revoked session leaves a tombstone (not a deletion) so that a reader which
  fetched the record just before the revocation cannot write it back (``SET NX``).
  The database stays the source of truth: session entries live under an *epoch* the
  database holds. When a tombstone may be missing (a revocation's Redis write failed, or
  Redis came back from an outage, possibly from an older snapshot), the process bumps the
  epoch in the database, logged like a revocation, so every process stops trusting every
  entry written before within a poll; they are read from the database again.
* **Login throttling** counters, shared by all instances.

Fail closed: the channel is pinged every ``ping_interval``; if Redis cannot be reached, the
hot state is marked stale and protected requests get 503 until it returns (then this
process drops its caches, since it may have missed messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from authgate.clock import Clock
from authgate.errors import BackendUnavailable
from authgate.hotstate import HotState
from authgate.models import SessionRecord
from authgate.tasks import cancel
from authgate.throttle import ACCOUNT_MEMORY, BASE_DELAY, MAX_DELAY, wait_seconds

log = logging.getLogger("authgate")
TOMBSTONE = b"-"
SESSION_CACHE_TTL = 86400


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
        self._tasks = [asyncio.create_task(self._listen(), name="authgate-redis-listen"),
                       asyncio.create_task(self._ping(), name="authgate-redis-ping")]

    async def stop(self) -> None:
        await cancel(*self._tasks)
        await self.client.aclose()
        await self._pinger.aclose()

    # -- fan-out --------------------------------------------------------------------------

    async def publish(self, keys: list[str]) -> None:
        if not keys:
            return
        try:
            if not self._tasks and any(key.startswith("session:") for key in keys):
                # Not started (the CLI): learn the epoch the servers use for tombstones.
                self.hot.redis_epoch = max(self.hot.redis_epoch,
                                           await self.hot.records.redis_epoch())
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    if key.startswith("session:"):
                        pipe.set(self._session_key(key[8:]), TOMBSTONE, ex=300)
                pipe.publish(self.channel, "\n".join(keys))
                await pipe.execute()
        except (RedisError, OSError):
            # Peers still learn it from the database log within a poll interval; this
            # process marks itself stale so it cannot promise more than it can keep.
            self._went_down()
            if any(key.startswith("session:") for key in keys):
                # The tombstone is missing: the session entry in Redis (which may persist
                # and come back) must not be trusted by anyone any more.
                await self._new_epoch("a revocation could not reach Redis")

    async def _listen(self) -> None:
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "message":
                        for key in message["data"].decode().split("\n"):
                            self.hot.apply(key)
            except (RedisError, OSError):
                self._went_down()
                await asyncio.sleep(self.ping_interval)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

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
        self.hot.apply(f"redis:{epoch}")
        log.warning("%s: Redis session cache epoch is now %d", why, epoch)
        return True

    def _went_down(self) -> None:
        if not self._down:
            log.error("Redis unreachable: failing closed (503) until it returns")
            self._down = True

    # -- session lookups ------------------------------------------------------------------

    def _session_key(self, token_hash: str) -> str:
        return f"{self.prefix}:sess:{self.hot.redis_epoch}:{token_hash}"

    async def get_session(self, token_hash: str) -> SessionRecord | bool | None:
        """The cached record, ``False`` for a tombstone (revoked), ``None`` when unknown or
        when Redis did not answer (the database, which is authoritative, is asked then;
        whether revocations still arrive is the ping loop's call)."""
        try:
            raw = await self.client.get(self._session_key(token_hash))
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
            await self.client.set(self._session_key(rec.token_hash), data, ex=ttl, nx=True)


# Each script runs atomically in Redis: a check and its count cannot interleave with
# another process's. Times are the engine's clock; windows are Redis TTLs.
_RESERVE = """
local now, threshold = tonumber(ARGV[1]), tonumber(ARGV[2])
local wait = 0
local locked = redis.call('HGET', KEYS[1], 'locked_until')
if locked and tonumber(locked) - now > wait then wait = tonumber(locked) - now end
if #KEYS > 1 then
  local n = redis.call('GET', KEYS[2])
  if n and tonumber(n) >= tonumber(ARGV[3]) then
    local ttl = redis.call('PTTL', KEYS[2])
    if ttl > 0 and ttl / 1000 > wait then wait = ttl / 1000 end
  end
end
if wait > 0 then return tostring(wait) end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('EXPIRE', KEYS[1], ARGV[5])
if failures >= threshold then
  local delay = tonumber(ARGV[6]) * 2 ^ math.min(failures - threshold, 20)
  if delay > tonumber(ARGV[7]) then delay = tonumber(ARGV[7]) end
  redis.call('HSET', KEYS[1], 'locked_until', tostring(now + delay))
end
if #KEYS > 1 then
  redis.call('INCR', KEYS[2])
  if redis.call('PTTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
end
return '0'
"""
_SUCCEEDED = """
redis.call('DEL', KEYS[1])
if #KEYS > 1 and tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then
  redis.call('DECR', KEYS[2])
end
return 0
"""
_HIT = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[2])
    ttl = tonumber(ARGV[2]) * 1000
  end
  return tostring(ttl / 1000)
end
redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return '0'
"""


class RedisThrottle:
    """The throttle of :mod:`authgate.throttle` with its counters in Redis."""

    def __init__(self, client: aioredis.Redis, clock: Clock, lock_threshold: int = 5,
                 ip_limit: int = 50, ip_window: float = 900.0, prefix: str = "authgate") -> None:
        self.client = client
        self.clock = clock
        self.lock_threshold = lock_threshold
        self.ip_limit = ip_limit
        self.ip_window = ip_window
        self.prefix = prefix
        self._reserve = client.register_script(_RESERVE)
        self._succeeded = client.register_script(_SUCCEEDED)
        self._hit = client.register_script(_HIT)

    def _keys(self, account: str, ip: str, device: str | None) -> list[str]:
        if device is not None:  # a known browser: its own counter, no address count
            return [f"{self.prefix}:th:d:{device}"]
        return [f"{self.prefix}:th:a:{account}", f"{self.prefix}:th:ip:{ip}"]

    async def reserve(self, account: str, ip: str, device: str | None = None) -> float:
        args: list[str | int | float] = [repr(self.clock.now()), self.lock_threshold, self.ip_limit,
                max(1, int(self.ip_window)), int(ACCOUNT_MEMORY), BASE_DELAY, MAX_DELAY]
        try:
            wait = await self._reserve(keys=self._keys(account, ip, device), args=args)
        except (RedisError, OSError) as exc:
            raise BackendUnavailable("Redis is unavailable") from exc
        return wait_seconds(float(wait))

    async def succeeded(self, account: str, ip: str, device: str | None = None) -> None:
        try:
            await self._succeeded(keys=self._keys(account, ip, device))
        except (RedisError, OSError) as exc:
            raise BackendUnavailable("Redis is unavailable") from exc

    async def hit(self, bucket: str, key: str, limit: int, window: float) -> float:
        try:
            wait = await self._hit(keys=[f"{self.prefix}:th:{bucket}:{key}"],
                                   args=[limit, max(1, int(window))])
        except (RedisError, OSError) as exc:
            raise BackendUnavailable("Redis is unavailable") from exc
        return wait_seconds(float(wait))

    async def purge(self) -> int:
        return 0  # keys expire by themselves
