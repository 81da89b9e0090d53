"""The login and per-address throttle (:mod:`authgate.throttle`) with its counters in Redis,
shared by every instance. Each check and its count is one Lua script, so two processes'
attempts cannot interleave."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from authgate.clock import Clock
from authgate.errors import BackendUnavailable
from authgate.throttle import ACCOUNT_MEMORY, BASE_DELAY, MAX_DELAY, wait_seconds

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
  -- %.17g (exact), not tostring: its 14 significant digits round epoch times to 0.1 ms,
  -- enough to make a 2 s lock answer Retry-After: 3
  redis.call('HSET', KEYS[1], 'locked_until', string.format('%.17g', now + delay))
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
