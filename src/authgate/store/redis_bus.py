"""The Redis revocation bus: one pub/sub channel every process subscribes to; each applies
what it receives to its in-memory state within milliseconds. A message only speeds up what
the database's revocation log (polled every ``REVOCATION_POLL_INTERVAL``) delivers anyway."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from authgate.models import Revocation
from authgate.store.bus_messages import receive
from authgate.tasks import cancel


class RedisBus:
    """Publish on, and listen to, ``channel``; ``on_error`` hears of every failure to
    listen (then it retries every ``retry_after`` seconds)."""

    def __init__(self, client: aioredis.Redis, channel: str, apply: Callable[[str], None],
                 delay: Callable[[float], None] | None = None,
                 on_error: Callable[[], None] | None = None,
                 retry_after: float = 0.25) -> None:
        self.client = client
        self.channel = channel
        self.apply = apply
        self.delay = delay
        self.on_error = on_error
        self.retry_after = retry_after
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="authgate-redis-listen")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def publish(self, events: Sequence[Revocation]) -> None:
        """Send ``events`` to every subscriber (this process included); raises
        ``RedisError``/``OSError`` when Redis cannot be reached."""
        if events:
            async with self.client.pipeline(transaction=False) as pipe:
                self.queue(pipe, events)
                await pipe.execute()

    def queue(self, pipe: Pipeline, events: Sequence[Revocation]) -> None:
        """Add the message of ``events`` to ``pipe`` (one round trip with other writes)."""
        pipe.publish(self.channel, "\n".join(str(e) for e in events))

    async def _listen(self) -> None:
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "message":
                        receive(message["data"].decode(), self.apply, self.delay)
            except (RedisError, OSError):
                if self.on_error is not None:
                    self.on_error()
                await asyncio.sleep(self.retry_after)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
