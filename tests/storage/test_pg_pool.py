"""PostgreSQL's connection pool: a connection idle for over ``PING_IDLE`` seconds is pinged
before use (one the server dropped meanwhile is replaced, unseen by the caller); one back
in the pool a moment ago is used as it is, without the round trip ``pool_pre_ping`` made
on every checkout. Real PostgreSQL; the server drops a connection with
``pg_terminate_backend``."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa

from authgate.errors import BackendUnavailable
from authgate.store import db as db_module
from authgate.store.db import Database


async def backend_pid(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one())


async def drop(db: Database, pid: int) -> None:
    """The server ends that connection (as a restart or an idle timeout would)."""
    other = await asyncpg.connect(db.driver_url)
    try:
        assert await other.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await other.close()


@pytest.fixture
def pings(postgresql_database: Database, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The pings the pool sends (the dialect's own ``do_ping``, counted)."""
    dialect = postgresql_database.engine.sync_engine.dialect
    sent: list[Any] = []
    real = dialect.do_ping

    def counted(dbapi_conn: Any) -> bool:
        sent.append(dbapi_conn)
        return real(dbapi_conn)

    monkeypatch.setattr(dialect, "do_ping", counted)
    return sent


async def test_a_connection_back_a_moment_ago_is_not_pinged(
        postgresql_database: Database, pings: list[Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    first = await backend_pid(postgresql_database)
    for _ in range(5):
        assert await backend_pid(postgresql_database) == first  # the same connection
    assert pings == []
    monkeypatch.setattr(db_module, "PING_IDLE", 0.0)  # every connection counts as idle now
    assert await backend_pid(postgresql_database) == first
    assert len(pings) == 1


async def test_an_idle_connection_the_server_dropped_is_replaced_unseen(
        postgresql_database: Database, pings: list[Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    first = await backend_pid(postgresql_database)
    await drop(postgresql_database, first)
    monkeypatch.setattr(db_module, "PING_IDLE", 0.0)
    assert await backend_pid(postgresql_database) != first  # no error: pinged, replaced
    assert len(pings) == 1


async def test_a_dropped_connection_used_a_moment_ago_fails_once_then_is_replaced(
        postgresql_database: Database, pings: list[Any]) -> None:
    first = await backend_pid(postgresql_database)
    await drop(postgresql_database, first)
    with pytest.raises(BackendUnavailable):  # the 503 of that one request
        await backend_pid(postgresql_database)
    assert await backend_pid(postgresql_database) != first
    assert pings == []
