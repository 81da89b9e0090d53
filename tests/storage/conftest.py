"""The storage contract suite: each protocol of ``authgate.store.protocols``, the same tests
over every implementation, on real services (PostgreSQL, Redis; with ``CI`` set a missing
one fails, elsewhere it skips). A new backend is one file in src/authgate/store/ and one
more parameter here."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from authgate.clock import ManualClock
from authgate.models import Revocation
from authgate.store.db import Database
from authgate.store.db_throttle import DbThrottle
from authgate.store.pg_notify_bus import PgNotifyBus
from authgate.store.protocols import RevocationBus, SessionCache, ThrottleStore
from authgate.store.redis_bus import RedisBus
from authgate.store.redis_sessions import RedisSessions
from authgate.store.redis_throttle import RedisThrottle
from authgate.store.shared import log_revocations
from authgate.store.socket_bus import SocketBus
from tests.unit.conftest import _drop_pg, _pg_database, private_redis_prefix

Settle = Callable[[float], Awaitable[None]]


@pytest.fixture
async def postgresql_database() -> AsyncIterator[Database]:
    """A fresh, migrated PostgreSQL database (dropped afterwards)."""
    url = await _pg_database()
    db = Database(url)
    await db.migrate()
    yield db
    await db.close()
    await _drop_pg(url)


@pytest.fixture
async def sqlite_database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    await db.migrate()
    yield db
    await db.close()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[tuple[aioredis.Redis, str]]:
    """A Redis client and a key prefix of this test's own (its keys deleted afterwards)."""
    async with private_redis_prefix("agst") as pair:
        yield pair


# -- ThrottleStore -------------------------------------------------------------------------


@dataclass
class Throttles:
    """Builds throttle stores of one backend sharing one state (two = two processes)."""

    make: Callable[..., ThrottleStore]
    clock: ManualClock
    #: Redis keeps windows as key TTLs (real time); the database as times of the clock.
    real_time_windows: bool

    async def later(self, seconds: float) -> None:
        """Let ``seconds`` pass for every kind of window."""
        self.clock.advance(seconds)
        if self.real_time_windows:
            await asyncio.sleep(seconds)


THROTTLE_BACKENDS = ["sqlite", "postgresql", "redis"]


@pytest.fixture(params=THROTTLE_BACKENDS)
def throttles(request: pytest.FixtureRequest) -> Throttles:
    clock = ManualClock()
    if request.param == "redis":
        client, prefix = request.getfixturevalue("redis_prefix")

        def make_redis(**limits: Any) -> ThrottleStore:
            return RedisThrottle(client, clock, prefix=prefix, **limits)

        return Throttles(make_redis, clock, real_time_windows=True)
    db: Database = request.getfixturevalue(f"{request.param}_database")

    def make_db(**limits: Any) -> ThrottleStore:
        return DbThrottle(db, clock, **limits)

    return Throttles(make_db, clock, real_time_windows=False)


# -- RevocationBus -------------------------------------------------------------------------


@dataclass
class Instance:
    """One process's bus and what it has applied."""

    bus: RevocationBus
    received: list[str] = field(default_factory=list)


@dataclass
class Buses:
    """Bus instances of one backend, as separate processes would have them."""

    factory: Callable[[Callable[[str], None]], RevocationBus]
    #: The database whose revocation log the bus accompanies (None: Redis needs none).
    db: Database | None
    clock: ManualClock = field(default_factory=ManualClock)
    started: list[Instance] = field(default_factory=list)

    async def start(self) -> Instance:
        received: list[str] = []
        instance = Instance(self.factory(received.append), received)
        await instance.bus.start()
        self.started.append(instance)
        return instance

    async def announce(self, instance: Instance, keys: list[str]) -> None:
        """What the engine does with a revocation: log it (in the change's transaction),
        then publish it."""
        events = [e for e in map(Revocation.parse, keys) if e is not None]
        if self.db is not None:
            async with self.db.write() as conn:
                await log_revocations(self.db, conn, events, self.clock.now())
        await instance.bus.publish(events)

    async def connected(self, sender: Instance, *receivers: Instance) -> None:
        """Wait until ``receivers`` hear ``sender`` (listening starts in the background)."""
        deadline = time.monotonic() + 15
        probe = f"jti:probe-{uuid.uuid4().hex}"
        while not all(probe in r.received for r in receivers):
            assert time.monotonic() < deadline, "the bus never connected"
            await self.announce(sender, [probe])
            await asyncio.sleep(0.05)
        for r in receivers:
            r.received.clear()


BUS_BACKENDS = ["socket", "pg_notify", "redis"]


@pytest.fixture(params=BUS_BACKENDS)
def bus_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Buses:
    """The backend's bus factory (its services are the parameter's fixtures)."""
    if request.param == "socket":
        db: Database | None = request.getfixturevalue("sqlite_database")
        path = tmp_path / "store.db"
        built = Buses(lambda apply: SocketBus(path, apply), db)
    elif request.param == "pg_notify":
        db = request.getfixturevalue("postgresql_database")
        assert db is not None
        url = db.driver_url
        built = Buses(lambda apply: PgNotifyBus(url, apply), db)
    else:
        client, prefix = request.getfixturevalue("redis_prefix")
        built = Buses(lambda apply: RedisBus(client, f"{prefix}:revocations", apply), None)
    return built


@pytest.fixture
async def buses(bus_backend: Buses) -> AsyncIterator[Buses]:
    yield bus_backend
    for instance in bus_backend.started:
        await instance.bus.stop()


# -- RecordStore and SessionCache ----------------------------------------------------------

RECORD_BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=RECORD_BACKENDS)
def record_db(request: pytest.FixtureRequest) -> Database:
    db: Database = request.getfixturevalue(f"{request.param}_database")
    return db


@dataclass
class Caches:
    """Builds session caches of one backend sharing one store; ``epoch`` is the cache
    generation the database vouches for (a backend without one ignores it)."""

    make: Callable[[Callable[[], int]], SessionCache]


SESSION_CACHE_BACKENDS = ["redis"]


@pytest.fixture(params=SESSION_CACHE_BACKENDS)
def caches(request: pytest.FixtureRequest) -> Caches:
    client, prefix = request.getfixturevalue("redis_prefix")
    return Caches(lambda epoch: RedisSessions(client, prefix, epoch))
