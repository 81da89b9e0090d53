"""The webhook outbox on every backend: several senders (instances) claiming at once never
get the same delivery; a claim lapses after its lease; a failure is retried later."""

from __future__ import annotations

import asyncio

from authgate.events import AuthEvent
from tests.unit.conftest import EngineFactory


async def test_concurrent_claims_are_disjoint_and_lapse(make_engine: EngineFactory) -> None:
    engines = [await make_engine() for _ in range(4)]
    now = engines[0].clock.now()
    events = [AuthEvent(type="user.created", at=now, user_id=f"u{i}") for i in range(12)]
    await engines[0].audit.store_events(events, webhooks=True)
    claimed = await asyncio.gather(*(e.audit.claim(now, 30.0, limit=5) for e in engines))
    ids = [d.id for batch in claimed for d in batch]
    assert len(ids) == len(set(ids)) == 12  # every delivery once, none twice
    assert await engines[1].audit.claim(now + 1, 30.0) == []  # all leased
    again = await engines[2].audit.claim(now + 31, 30.0, limit=20)  # leases lapsed
    assert sorted(d.id for d in again) == sorted(ids)


async def test_delivered_and_failed(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    now = engine.clock.now()
    await engine.audit.store_events([AuthEvent(type="sign_out", at=now, user_id="u")], True)
    [delivery] = await engine.audit.claim(now, 30.0)
    await engine.audit.failed(delivery.id, now + 60, "HTTP 500")
    assert await engine.audit.claim(now + 59, 30.0) == []  # backing off
    [retry] = await engine.audit.claim(now + 60, 30.0)
    assert retry.id == delivery.id and retry.attempts == 1
    await engine.audit.delivered(retry.id, now + 61)
    assert await engine.audit.pending() == []
