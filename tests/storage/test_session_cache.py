"""SessionCache: records shared by processes in front of the record store, where a
revocation leaves a tombstone no racing reader can overwrite."""

from __future__ import annotations

import time

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
