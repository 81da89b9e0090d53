"""Connections: SQLAlchemy 2 async over aiosqlite (the embedded default) or asyncpg.

SQLite runs in WAL mode with a busy timeout; write transactions take the write lock up front
(``BEGIN IMMEDIATE``) so a read-then-write never deadlocks between workers.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, InvalidatePoolError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from authgate.errors import BackendUnavailable, ConfigError
from authgate.store import schema

log = logging.getLogger("authgate")

#: A PostgreSQL connection idle in the pool for longer than this is pinged before use.
PING_IDLE = 1.0


def owner_only(path: Path) -> None:
    """The SQLite file holds the private signing keys: create it readable by its owner only
    (0600; SQLite gives the -wal and -shm files the database's mode), and tighten an
    existing file (and its -wal/-shm) that others can read, saying so once."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        pass
    except OSError:
        return  # not ours to create here (read-only place): SQLite will say what is wrong
    else:
        os.close(fd)
        return
    for part in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            mode = stat.S_IMODE(part.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            try:
                part.chmod(mode & 0o700)
            except OSError:
                log.warning("%s is readable by other users (mode %o) and could not be "
                            "tightened: it holds the signing keys", part, mode)
                continue
            log.warning("tightened %s from mode %o to %o: it holds the signing keys",
                        part, mode, mode & 0o700)


def async_url(url: str) -> str:
    """``sqlite:///x.db`` → ``sqlite+aiosqlite:///x.db``; ``postgresql://`` → asyncpg."""
    scheme, _, rest = url.partition("://")
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        return f"sqlite+aiosqlite://{rest}"
    if scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        return f"postgresql+asyncpg://{rest}"
    raise ConfigError(f"unsupported database URL scheme {scheme!r}")


class Database:
    """An async engine plus the two ways in: :meth:`read` and :meth:`write`."""

    def __init__(self, url: str) -> None:
        self.url = async_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        #: The SQLite file (None for PostgreSQL and in-memory databases).
        self.sqlite_path: Path | None = None
        #: The URL for a driver connection of our own (asyncpg's spelling).
        self.driver_url = self.url.replace("postgresql+asyncpg://", "postgresql://", 1)
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            path = self.url.split(":///", 1)[1] if ":///" in self.url else ""
            if path and path != ":memory:":
                parent = Path(path).expanduser().resolve().parent
                if not parent.is_dir():
                    raise ConfigError(f"database directory {parent} does not exist")
                owner_only(Path(path).expanduser())
                self.sqlite_path = Path(path).expanduser().resolve()
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=10, pool_timeout=5,
                          connect_args={"timeout": 5, "command_timeout": 10})
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            self._sqlite_events()
        else:
            self._ping_idle_connections()

    def _ping_idle_connections(self) -> None:
        """SQLAlchemy's ``pool_pre_ping``, but only for a connection that has been idle in
        the pool for over :data:`PING_IDLE` seconds: the ping is a round trip (~100 µs of
        CPU here) on every checkout, which a connection used a moment ago does not need.
        One that died all the same (the server restarted within that second) fails its
        query, and SQLAlchemy then drops every pooled connection as stale (that request
        answers 503, the next ones reconnect)."""
        pool, dialect = self.engine.sync_engine.pool, self.engine.sync_engine.dialect

        @event.listens_for(pool, "checkin")
        def _returned(_dbapi_conn: Any, record: Any) -> None:
            record.info["returned_at"] = time.monotonic()

        @event.listens_for(pool, "checkout")
        def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
            returned = record.info.get("returned_at")
            if returned is None or time.monotonic() - returned <= PING_IDLE:
                return  # new, or back in the pool a moment ago
            try:
                dialect.do_ping(dbapi_conn)
            except Exception as exc:  # as pool_pre_ping: reconnect, and the others too
                raise InvalidatePoolError() from exc

    def _sqlite_events(self) -> None:
        sync_engine = self.engine.sync_engine

        @event.listens_for(sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            write = conn.get_execution_options().get("authgate_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self.engine.connect() as conn:
                yield conn
        except (OperationalError, DBAPIError, OSError) as exc:
            raise BackendUnavailable("the database is unavailable") from exc

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One transaction holding the write lock; committed on success, else rolled back."""
        try:
            async with self.engine.connect() as conn:
                conn = await conn.execution_options(authgate_write=True)
                async with conn.begin():
                    yield conn
        except (OperationalError, DBAPIError, OSError) as exc:
            if isinstance(exc, DBAPIError) and not _is_connectivity(exc):
                raise
            raise BackendUnavailable("the database is unavailable") from exc

    async def migrate(self) -> int:
        """Apply pending migrations; returns the number applied. Safe to race."""
        applied = 0
        async with self.write() as conn:
            if not self.is_sqlite:
                # Serialise concurrent starters on PostgreSQL (SQLite: BEGIN IMMEDIATE does).
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(727261)"))
            await conn.run_sync(
                lambda c: schema.schema_migrations.create(c, checkfirst=True))
            done = set((await conn.execute(sa.select(schema.schema_migrations.c.version)))
                       .scalars())
            for step in schema.MIGRATIONS:
                if step.version in done:
                    continue
                await conn.run_sync(step.run)
                await conn.execute(schema.schema_migrations.insert().values(
                    version=step.version, applied_at=time.time()))
                applied += 1
        return applied

    async def pending(self) -> list[schema.Migration]:
        """The migrations this database has not had yet (nothing is changed)."""
        async with self.read() as conn:
            exists = await conn.run_sync(
                lambda c: sa.inspect(c).has_table(schema.schema_migrations.name))
            done = set((await conn.execute(sa.select(
                schema.schema_migrations.c.version))).scalars()) if exists else set()
        return [m for m in schema.MIGRATIONS if m.version not in done]

    @property
    def dialect(self) -> sa.engine.Dialect:
        return self.engine.dialect

    async def close(self) -> None:
        await self.engine.dispose()


#: SQLSTATE classes that mean "no usable connection", not "this statement is wrong":
#: 08 connection exceptions, 57P01-57P03 shutdown / crash / "the database system is
#: starting up" (what a restarting PostgreSQL answers for a few seconds).
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")


def _is_connectivity(exc: DBAPIError) -> bool:
    if exc.connection_invalidated or isinstance(exc, OperationalError):
        return True
    for err in (exc.orig, getattr(exc.orig, "__cause__", None)):
        state = str(getattr(err, "sqlstate", None) or getattr(err, "pgcode", None) or "")
        if state.startswith(_UNAVAILABLE_SQLSTATES):
            return True
    return False
