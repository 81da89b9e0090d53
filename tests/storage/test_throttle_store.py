"""ThrottleStore: the same rules on the database (SQLite, PostgreSQL) and on Redis."""

from __future__ import annotations

import asyncio

from tests.storage.conftest import Throttles

IP, OTHER_IP = "203.0.113.7", "198.51.100.9"


async def test_failures_up_to_the_threshold_then_a_lock_that_doubles(
        throttles: Throttles) -> None:
    store = throttles.make(lock_threshold=3, ip_limit=100)
    assert [await store.reserve("acct", IP) for _ in range(3)] == [0, 0, 0]
    assert await store.reserve("acct", IP) == 2  # locked: not even counted
    throttles.clock.advance(2)
    assert await store.reserve("acct", IP) == 0  # the 4th failure: twice as long
    assert await store.reserve("acct", IP) == 4
    assert await store.reserve("another account", IP) == 0


async def test_a_success_clears_the_account(throttles: Throttles) -> None:
    store = throttles.make(lock_threshold=3, ip_limit=100)
    for _ in range(2):
        assert await store.reserve("acct", IP) == 0
    await store.succeeded("acct", IP)
    assert [await store.reserve("acct", IP) for _ in range(3)] == [0, 0, 0]
    assert await store.reserve("acct", IP) > 0


async def test_an_address_is_refused_past_its_limit_until_a_success_gives_one_back(
        throttles: Throttles) -> None:
    store = throttles.make(lock_threshold=100, ip_limit=3)
    for _ in range(3):
        assert await store.reserve("a", IP) == 0
    assert await store.reserve("b", IP) > 0
    assert await store.reserve("b", OTHER_IP) == 0
    await store.succeeded("a", IP)
    assert await store.reserve("b", IP) == 0


async def test_a_refused_attempt_counts_nowhere(throttles: Throttles) -> None:
    store = throttles.make(lock_threshold=2, ip_limit=2)
    for _ in range(2):
        assert await store.reserve("a", IP) == 0
    assert await store.reserve("c", IP) > 0  # the address is full: "c" not counted
    assert await store.reserve("c", OTHER_IP) == 0
    assert await store.reserve("c", OTHER_IP) == 0  # c's 2nd failure, not its 3rd
    assert await store.reserve("c", OTHER_IP) > 0


async def test_a_device_counts_on_its_own_counter(throttles: Throttles) -> None:
    store = throttles.make(lock_threshold=2, ip_limit=100)
    for _ in range(2):
        assert await store.reserve("acct", IP) == 0
    assert await store.reserve("acct", IP) > 0
    assert await store.reserve("acct", IP, device="known browser") == 0
    await store.succeeded("acct", IP, device="known browser")
    assert await store.reserve("acct", IP) > 0  # the account's lock stands


async def test_parallel_reservations_evaluate_at_most_the_threshold(
        throttles: Throttles) -> None:
    stores = [throttles.make(lock_threshold=4, ip_limit=1000) for _ in range(4)]
    waits = await asyncio.gather(*(stores[i % 4].reserve("acct", IP) for i in range(24)))
    assert sorted(waits).count(0) == 4


async def test_state_is_shared_by_every_instance(throttles: Throttles) -> None:
    one, two = (throttles.make(lock_threshold=2, ip_limit=100) for _ in range(2))
    assert await one.reserve("acct", IP) == 0
    assert await two.reserve("acct", IP) == 0
    assert await one.reserve("acct", IP) > 0


async def test_hit_limits_a_window_per_bucket_and_key(throttles: Throttles) -> None:
    store = throttles.make()
    assert [await store.hit("reg", IP, 2, 1) for _ in range(2)] == [0, 0]
    assert await store.hit("reg", IP, 2, 1) == 1
    assert await store.hit("reg", OTHER_IP, 2, 1) == 0
    assert await store.hit("revoke", IP, 2, 1) == 0
    await throttles.later(1.2)
    assert await store.hit("reg", IP, 2, 1) == 0


async def test_purge_keeps_what_still_throttles(throttles: Throttles) -> None:
    store = throttles.make(lock_threshold=1, ip_limit=100)
    assert await store.reserve("acct", IP) == 0
    assert await store.hit("reg", IP, 1, 60) == 0
    assert await store.purge() >= 0
    assert await store.reserve("acct", IP) > 0
    assert await store.hit("reg", IP, 1, 60) > 0
