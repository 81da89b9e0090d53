"""Engine fixtures, parametrised over every record backend (Litestar-style): the same tests
run on SQLite and on PostgreSQL. In CI (``CI=true``) a missing PostgreSQL is a failure."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from authgate.clock import ManualClock
from authgate.engine import Engine
from authgate.settings import Settings
from tests.conftest import POSTGRES_URL

EngineFactory = Callable[..., Awaitable[Engine]]


async def _pg_database() -> str:
    import asyncpg

    name = f"authgate_t_{uuid.uuid4().hex[:12]}"
    try:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL unreachable in CI: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
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


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'engine.db'}"
        return
    url = await _pg_database()
    yield url
    await _drop_pg(url)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def make_engine(database_url: str, clock: ManualClock) -> AsyncIterator[EngineFactory]:
    """Engines on one database (two engines = two processes sharing it)."""
    engines: list[Engine] = []

    async def make(**settings: Any) -> Engine:
        merged: dict[str, Any] = {"database_url": database_url, **settings}
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
