"""Engine fixtures, parametrised over every record backend (Litestar-style): the same tests
run on SQLite and on PostgreSQL. In CI (``CI`` truthy) a missing PostgreSQL is a failure."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from authgate.clock import ManualClock
from authgate.engine import Engine
from authgate.settings import Settings
from tests.conftest import POSTGRES_URL, REDIS_URL, in_ci

EngineFactory = Callable[..., Awaitable[Engine]]


async def _pg_database() -> str:
    import asyncpg

    name = f"authgate_t_{uuid.uuid4().hex[:12]}"
    try:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        _unreachable("PostgreSQL", exc)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"


async def _drop_pg(url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _unreachable(what: str, exc: BaseException) -> None:
    if in_ci():
        pytest.fail(f"{what} unreachable in CI: {exc}")
    pytest.skip(f"{what} unreachable: {exc}")


@contextlib.asynccontextmanager
async def private_redis_prefix(tag: str = "agt") -> AsyncIterator[tuple[Any, str]]:
    """A Redis client and a key prefix of this test's own (its keys deleted afterwards)."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError) as exc:
        await client.aclose()
        _unreachable("Redis", exc)
    prefix = f"{tag}{uuid.uuid4().hex[:10]}"
    try:
        yield client, prefix
    finally:
        keys = [k async for k in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def _redis_settings() -> AsyncIterator[dict[str, Any]]:
    async with private_redis_prefix() as (_client, prefix):
        yield {"redis_url": REDIS_URL, "redis_prefix": prefix}


# The same engine tests on every backend combination an operator can choose.
BACKENDS = ["sqlite", "postgresql", "postgresql+redis"]


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path
                  ) -> AsyncIterator[dict[str, Any]]:
    """Settings naming the record store (and hot-state store) under test."""
    db, _, hot = str(request.param).partition("+")
    settings: dict[str, Any] = {}
    if db == "sqlite":
        settings["database_url"] = f"sqlite:///{tmp_path / 'engine.db'}"
    else:
        settings["database_url"] = await _pg_database()
    redis_gen = _redis_settings() if hot == "redis" else None
    if redis_gen is not None:
        settings.update(await redis_gen.__anext__())
    yield settings
    if redis_gen is not None:
        with contextlib.suppress(StopAsyncIteration):
            await redis_gen.__anext__()
    if db != "sqlite":
        await _drop_pg(settings["database_url"])


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def make_engine(backend: dict[str, Any], clock: ManualClock
                      ) -> AsyncIterator[EngineFactory]:
    """Engines on one backend (two engines = two processes sharing it)."""
    engines: list[Engine] = []

    async def make(**settings: Any) -> Engine:
        # The cheap test preset unless a test pins the hash (password_hash_preset="default").
        merged: dict[str, Any] = {"password_hash_preset": "test", **backend, **settings}
        engine = Engine(Settings(**merged), clock=clock)
        await engine.start()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.stop()


@pytest.fixture
async def engine(make_engine: EngineFactory) -> Engine:
    return await make_engine()
