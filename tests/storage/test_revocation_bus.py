"""RevocationBus: a revocation announced by one process reaches the others, on SQLite
(Unix sockets), PostgreSQL (LISTEN/NOTIFY) and Redis (pub/sub)."""

from __future__ import annotations

import asyncio
import time

from tests.storage.conftest import Buses, Instance


async def until(instance: Instance, keys: list[str], within: float = 1.0) -> None:
    deadline = time.monotonic() + within
    while not set(keys) <= set(instance.received):
        missing = len(set(keys) - set(instance.received))
        assert time.monotonic() < deadline, f"{missing} of {len(keys)} keys never arrived"
        await asyncio.sleep(0.005)


async def test_a_publish_on_one_instance_is_received_by_another(buses: Buses) -> None:
    a, b = await buses.start(), await buses.start()
    await buses.connected(a, b)
    keys = ["session:5e551011", "family:f-1", "jti:j-1", "user:u-1"]
    await buses.announce(a, keys)
    await until(b, keys)
    assert b.received == keys  # in order, each once


async def test_every_instance_hears_every_other(buses: Buses) -> None:
    a, b, c = [await buses.start() for _ in range(3)]
    await buses.connected(a, b, c)
    await buses.connected(c, a, b)
    await buses.announce(c, ["jti:from-c"])
    await until(a, ["jti:from-c"])
    await until(b, ["jti:from-c"])


async def test_a_large_batch_arrives_whole(buses: Buses) -> None:
    """More than a datagram (60 kB) and a pg_notify payload (8 kB) hold."""
    a, b = await buses.start(), await buses.start()
    await buses.connected(a, b)
    keys = [f"session:{i:064x}" for i in range(3000)]
    await buses.announce(a, keys)
    await until(b, keys, within=5.0)


async def test_a_stopped_instance_hears_nothing_and_the_rest_go_on(buses: Buses) -> None:
    a, b, c = [await buses.start() for _ in range(3)]
    await buses.connected(a, b, c)
    await c.bus.stop()
    c.received.clear()
    await buses.announce(a, ["family:after-stop"])
    await until(b, ["family:after-stop"])
    await asyncio.sleep(0.2)
    assert c.received == []


async def test_publishing_nothing_is_harmless(buses: Buses) -> None:
    a, b = await buses.start(), await buses.start()
    await buses.connected(a, b)
    await a.bus.publish([])
    await buses.announce(a, ["jti:next"])
    await until(b, ["jti:next"])
    assert b.received == ["jti:next"]
