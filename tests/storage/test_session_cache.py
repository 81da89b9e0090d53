"""SessionCache: records shared by processes in front of the record store, where a
revocation leaves a tombstone no racing reader can overwrite."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from authgate.models import SessionRecord
from tests.storage.conftest import Caches


def record(name: str, now: float, idle: int = 1800) -> SessionRecord:
    return SessionRecord(id=f"id-{name}", token_hash=f"hash-{name}", user_id="u1",
                         csrf_token="csrf", created_at=now, last_seen_at=now,
                         expires_at=now + 43200, idle_ttl=idle, ip="192.0.2.1",
                         user_agent="test")


async def test_a_stored_record_comes_back_whole(caches: Caches) -> None:
    cache, now = caches.make(lambda: 0), time.time()
    rec = record("a", now)
    await cache.put_session(rec, now)
    assert await cache.get_session(rec.token_hash) == rec
    assert await caches.make(lambda: 0).get_session(rec.token_hash) == rec  # shared


async def test_how_the_user_signed_in_travels_with_the_record(caches: Caches) -> None:
    from dataclasses import replace

    cache, now = caches.make(lambda: 0), time.time()
    rec = replace(record("mfa", now), amr="pwd otp mfa", auth_time=now - 5)
    await cache.put_session(rec, now)
    got = await caches.make(lambda: 0).get_session(rec.token_hash)
    assert isinstance(got, SessionRecord)
    assert got.amr == "pwd otp mfa" and got.auth_time == now - 5


async def test_unknown_is_none(caches: Caches) -> None:
    assert await caches.make(lambda: 0).get_session("hash-nobody") is None


async def test_a_tombstone_wins_over_a_late_fill(caches: Caches) -> None:
    cache, now = caches.make(lambda: 0), time.time()
    rec = record("b", now)
    await cache.put_session(rec, now)
    await cache.revoke_sessions([rec.token_hash])
    assert await cache.get_session(rec.token_hash) is False
    await cache.put_session(rec, now)  # a reader that fetched it before the revocation
    assert await cache.get_session(rec.token_hash) is False


async def test_a_record_past_its_deadline_is_not_stored(caches: Caches) -> None:
    cache, now = caches.make(lambda: 0), time.time()
    rec = record("c", now - 100, idle=50)
    await cache.put_session(rec, now)
    assert await cache.get_session(rec.token_hash) is None


async def test_a_new_epoch_disowns_every_earlier_entry(caches: Caches) -> None:
    epoch = [1]
    cache, now = caches.make(lambda: epoch[0]), time.time()
    live, revoked = record("d", now), record("e", now)
    await cache.put_session(live, now)
    await cache.revoke_sessions([revoked.token_hash])
    epoch[0] = 2
    assert await cache.get_session(live.token_hash) is None
    assert await cache.get_session(revoked.token_hash) is None  # the database decides


async def test_concurrent_reads_share_one_round_trip(
        redis_prefix: tuple[Any, str]) -> None:
    """A just-started worker misses on every session: the reads of requests in flight go to
    Redis together (one ``MGET`` on one connection, not one ``GET`` and one connection
    each), and each still gets its own answer: a record, a tombstone or nothing."""
    import redis.asyncio as aioredis

    from authgate.store.redis_sessions import RedisSessions
    from tests.conftest import REDIS_URL

    _, prefix = redis_prefix
    now, name = time.time(), f"mget-{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis(connection_pool=aioredis.ConnectionPool.from_url(
        REDIS_URL, client_name=name))
    try:
        cache = RedisSessions(client, prefix, lambda: 0)
        stored = [record(f"m{i}", now) for i in range(20)]
        for rec in stored:
            await cache.put_session(rec, now)
        await cache.revoke_sessions([stored[0].token_hash])
        await client.connection_pool.disconnect()  # so only the reads below open any
        asked = [rec.token_hash for rec in stored] + [f"hash-none-{i}" for i in range(12)]
        got = await asyncio.gather(*(cache.get_session(h) for h in asked))
        assert got[0] is False and got[1:20] == stored[1:] and got[20:] == [None] * 12
        listed = await client.client_list()
        assert sum(c["name"] == name for c in listed) == 1
    finally:
        await client.aclose()


async def test_a_batch_past_its_limit_or_a_failed_one_answers_every_reader(
        redis_prefix: tuple[Any, str]) -> None:
    import redis.asyncio as aioredis

    from authgate.store.redis_sessions import MultiGet, RedisSessions

    client, prefix = redis_prefix
    now = time.time()
    cache = RedisSessions(client, prefix, lambda: 0)
    stored = [record(f"l{i}", now) for i in range(MultiGet(client).limit + 44)]
    for rec in stored:
        await cache.put_session(rec, now)
    got = await asyncio.gather(*(cache.get_session(rec.token_hash) for rec in stored))
    assert got == stored  # two MGETs, each answer to its own reader

    down = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    try:  # Redis unreachable: every reader hears "unknown" (the database is asked then)
        gone = RedisSessions(down, prefix, lambda: 0)
        assert await asyncio.gather(*(gone.get_session(f"hash-{i}") for i in range(5))) \
            == [None] * 5
    finally:
        await down.aclose()


def test_a_read_left_on_a_stopped_loop_does_not_hold_up_the_next_one() -> None:
    """Keys asked for in a turn that never ended (the loop stopped first) are dropped; a
    later loop's read is sent, and answered."""
    import redis.asyncio as aioredis

    from authgate.store.redis_sessions import MultiGet
    from tests.conftest import REDIS_URL

    key = f"agst-stopped-{uuid.uuid4().hex[:8]}"
    gets = MultiGet(aioredis.from_url(REDIS_URL))
    first = asyncio.new_event_loop()
    try:
        pending = first.create_task(gets.get(key))
        first.call_soon(first.stop)
        first.run_forever()  # the read was asked; the turn that would send it never ended
        assert not pending.done()
    finally:
        first.close()

    async def second() -> bytes | None:
        gets.client = aioredis.from_url(REDIS_URL)
        try:
            return await asyncio.wait_for(gets.get(key), 5)
        finally:
            await gets.client.aclose()

    assert asyncio.run(second()) is None
