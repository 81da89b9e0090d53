"""Concurrent cache misses share one read (hotstate.SingleFlight): on its own, then in a
second engine (a second process) that has never seen a session, an API key or a user, on
every backend: 32 requests at once make one read of each."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from authgate.engine import Engine
from authgate.hotstate import SingleFlight
from tests.unit.conftest import EngineFactory

PW = "correct battery horse stapler"


async def test_waiters_share_one_read_its_result_and_its_exception() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    reads: Counter[str] = Counter()
    gate = asyncio.Event()

    async def read(key: str) -> int:
        reads[key] += 1
        await gate.wait()
        if key == "bad":
            raise LookupError(key)
        return len(key)

    waiting = [asyncio.ensure_future(flights.run(k, lambda k=k: read(k), 0))  # type: ignore[misc]
               for k in ("abc",) * 5 + ("bad",) * 3]
    await asyncio.sleep(0)
    assert len(flights) == 2
    gate.set()
    done = await asyncio.gather(*waiting, return_exceptions=True)
    assert done[:5] == [3] * 5
    assert all(isinstance(e, LookupError) for e in done[5:])
    assert reads == Counter({"abc": 1, "bad": 1}) and len(flights) == 0
    assert await flights.run("abc", lambda: read("abc"), 0) == 3  # a later miss reads again
    assert reads["abc"] == 2


async def test_a_waiter_that_goes_away_does_not_cancel_the_read_for_the_others() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    gate = asyncio.Event()

    async def read() -> str:
        await gate.wait()
        return "value"

    first = asyncio.ensure_future(flights.run("k", read, 0))
    second = asyncio.ensure_future(flights.run("k", read, 0))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    gate.set()
    assert await second == "value"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_caller_after_a_revocation_does_not_join_a_read_begun_before_it() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    gate = asyncio.Event()
    started: list[int] = []

    async def read(n: int) -> int:
        started.append(n)
        await gate.wait()
        return n

    before = asyncio.ensure_future(flights.run("u", lambda: read(1), 7))
    also_before = asyncio.ensure_future(flights.run("u", lambda: read(2), 7))
    after = asyncio.ensure_future(flights.run("u", lambda: read(3), 8))  # generation moved
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(before, also_before, after) == [1, 1, 3]
    assert started == [1, 3]


def counting(engine: Engine, target: Any, name: str, counts: Counter[str]) -> None:
    """Count the calls of one of the engine's own read methods (calling it through)."""
    real = getattr(target, name)

    async def counted(*args: Any, **kwargs: Any) -> Any:
        counts[name] += 1
        return await real(*args, **kwargs)

    setattr(target, name, counted)


async def test_a_cold_process_reads_a_session_key_and_user_once(
        make_engine: EngineFactory) -> None:
    first = await make_engine()
    user = await first.users.create_user("kim", PW, ["reports"])
    value, _, _ = await first.sessions.login("kim", PW)
    key, _ = await first.api_keys.create(user, "ci")
    cold = await make_engine()  # another process: nothing of kim's in its caches
    counts: Counter[str] = Counter()
    for name in ("get_session", "get_api_key", "get_user"):
        counting(cold, cold.records, name, counts)
    if cold.redis is not None:
        counting(cold, cold.redis, "get_session", counts)
    sessions = await asyncio.gather(*(cold.sessions.session_principal(value)
                                      for _ in range(32)))
    assert all(p is not None and p.user.id == user.id for p in sessions)
    keys = await asyncio.gather(*(cold.api_keys.principal(key) for _ in range(32)))
    assert {p.api_key.id for p in keys if p.api_key} == {keys[0].api_key.id}  # type: ignore[union-attr]
    # one read each (the session from Redis when it has it, else from the database)
    assert counts["get_session"] == 1 and counts["get_api_key"] == 1
    assert counts["get_user"] == 1
