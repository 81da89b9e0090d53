"""Revocation hardening (issue 9): h02, h03, h06, h12, h20.

Each test fails on the code before its fix: h02 resurrected a session logged out during a
Redis outage, h03 skipped a revocation-log row committed late, h06 cached a session revoked
while its cold read was in flight, h12 had no role command (and cached roles), h20 evicted
the session in use."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from authgate.clock import ManualClock
from authgate.engine import Engine
from authgate.models import SessionRecord
from authgate.settings import Settings
from tests.blackbox.support import eventually, register, signed_in
from tests.conftest import Server
from tests.scaleout.test_faults import PrivateRedis, wait_for
from tests.unit.conftest import _drop_pg, _pg_database

PASSWORD = "revocation hardening passphrase"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _stays(check: Callable[[], bool], seconds: float, step: float = 0.1) -> bool:
    """``check()`` holds every time for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not check():
            return False
        time.sleep(step)
    return True


# -- in-process engines --------------------------------------------------------------------


@pytest.fixture
async def engines(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``await engines(url)``: an engine (a process) on ``url``, stopped afterwards."""
    started: list[Engine] = []
    clock = ManualClock()

    async def make(url: str, **settings: Any) -> Engine:
        engine = Engine(Settings(database_url=url, **settings), clock=clock)
        await engine.start()
        started.append(engine)
        return engine

    yield make
    for engine in started:
        await engine.stop()


@pytest.fixture
async def pg_db() -> AsyncIterator[str]:
    url = await _pg_database()
    yield url
    await _drop_pg(url)


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'engine.db'}"
        return
    url = await _pg_database()
    yield url
    await _drop_pg(url)


async def _session(engine: Engine, name: str) -> tuple[str, SessionRecord]:
    await engine.users.create_user(name, PASSWORD, check=False)
    value, rec, _ = await engine.sessions.login(name, PASSWORD, ip="127.0.0.1")
    return value, rec


async def test_h03_revocation_committed_late_is_still_applied(
        pg_db: str, engines: Callable[..., Any]) -> None:
    import asyncpg

    a, b = await engines(pg_db), await engines(pg_db)
    slow_value, slow = await _session(a, "h03-slow")
    fast_value, _ = await _session(a, "h03-fast")
    assert await b.sessions.session_principal(slow_value) is not None  # both cached on B
    assert await b.sessions.session_principal(fast_value) is not None

    raw = await asyncpg.connect(pg_db)
    try:
        # A logout whose transaction is slow to commit: its log row takes id N now...
        tx = raw.transaction()
        await tx.start()
        await raw.execute("DELETE FROM sessions WHERE id = $1", slow.id)
        await raw.execute("INSERT INTO revocations (kind, key, at) VALUES ('session', $1, $2)",
                          slow.token_hash, a.clock.now())
        # ... while the next one (N+1) commits at once and B's watcher reads it.
        await a.sessions.end_session(fast_value)
        await b.hot.poll()
        assert await b.sessions.session_principal(fast_value) is None
        await tx.commit()
    finally:
        await raw.close()
    await b.hot.poll()
    assert await b.sessions.session_principal(slow_value) is None


async def test_h03_log_rows_read_again_are_applied_once(
        pg_db: str, engines: Callable[..., Any]) -> None:
    """The PostgreSQL cursor re-reads rows at or above the oldest running transaction:
    each is applied once, not on every poll (no cache churn)."""
    import asyncpg

    a, b = await engines(pg_db), await engines(pg_db)
    value, _ = await _session(a, "h03-dup")
    raw = await asyncpg.connect(pg_db)
    try:
        tx = raw.transaction()
        await tx.start()
        await raw.execute("SELECT pg_current_xact_id()")  # holds the xmin back
        await a.sessions.end_session(value)
        await b.hot.poll()
        applied = b.hot.generation
        await b.hot.poll()
        await b.hot.poll()
        assert b.hot.generation == applied
        await tx.rollback()
    finally:
        await raw.close()


async def test_h06_revocation_during_a_cold_session_load_is_not_cached(
        any_db: str, engines: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = await engines(any_db), await engines(any_db)
    value, _ = await _session(a, "h06")
    real = b.records.get_session
    reading, release = asyncio.Event(), asyncio.Event()

    async def slow_read(token_hash: str) -> SessionRecord | None:
        rec = await real(token_hash)
        if not reading.is_set():  # the first read: stall it with the record in hand
            reading.set()
            await release.wait()
        return rec

    monkeypatch.setattr(b.records, "get_session", slow_read)
    load = asyncio.create_task(b.sessions.session_principal(value))  # B has not seen it yet
    await asyncio.wait_for(reading.wait(), 5)
    await a.sessions.end_session(value)
    await b.hot.poll()  # the revocation reaches B while its read is in flight
    release.set()
    await asyncio.wait_for(load, 5)  # concurrent with the logout: either answer is fine
    assert await b.sessions.session_principal(value) is None
    assert b.hot.sessions.get(_digest(value)) is None


# -- h02: a Redis that persists, stopped during a revocation ------------------------------


class PersistentRedis(PrivateRedis):
    """A private ``redis-server --appendonly yes`` (every write fsynced) whose restart
    reloads the append-only file from the same directory."""

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL)
        wait_for(lambda: _pings(self.port))

    def session_keys(self) -> list[str]:
        import redis

        client = redis.Redis(port=self.port)
        try:
            return [k.decode() for k in client.scan_iter("*:sess:*")]
        finally:
            client.close()


def _pings(port: int) -> bool:
    import redis

    client = redis.Redis(port=port)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[PersistentRedis]:
    r = PersistentRedis(tmp_path / "redis")
    r.workdir.mkdir()
    r.start()
    yield r
    r.stop()


@pytest.mark.subprocess  # two instances, a Redis restarted under them
def test_h02_redis_outage_during_logout_does_not_resurrect_sessions(
        make_server: Callable[..., Server], pg_url: str,
        persistent_redis: PersistentRedis) -> None:
    settings = {"database_url": pg_url, "redis_url": f"redis://127.0.0.1:{persistent_redis.port}/0"}
    a = make_server(**settings)
    b = make_server(**settings)
    logged_out, _, _ = signed_in(a)
    everywhere, _, _ = signed_in(a)
    name, pw, _ = register(a)
    by_cli, _, _ = signed_in(a, name, pw)
    values = {c: str(c.session_value) for c in (logged_out, everywhere, by_cli)}
    cookies = {c: {"Cookie": f"{c.session_cookie}={v}"} for c, v in values.items()}

    def in_redis(c: Any) -> bool:
        return any(k.endswith(_digest(values[c])) for k in persistent_redis.session_keys())

    def on_b(c: Any) -> int:
        return httpx.get(f"{b.url}/auth/me", headers=cookies[c]).status_code

    for c in cookies:  # used on B: B found them in Redis, which keeps them on disk
        assert on_b(c) == 200
    assert all(in_redis(c) for c in cookies)

    persistent_redis.stop()
    # A takes the revocations (the database holds them; 204), though Redis cannot be told.
    assert logged_out.unsafe("POST", "/auth/logout").status_code == 204
    assert everywhere.unsafe("DELETE", "/auth/sessions").status_code == 204
    done = a.cli("users", "set-password", name, "--password-stdin",
                 input=f"{PASSWORD} changed\n")
    assert done.returncode == 0, done.stderr

    persistent_redis.start()  # the append-only file comes back, with no tombstones in it
    assert all(in_redis(c) for c in cookies)
    for c in cookies:
        assert eventually(lambda c=c: on_b(c) == 401, within=15), on_b(c)
    assert _stays(lambda: all(on_b(c) == 401 for c in cookies), 2.0)
    assert all(httpx.get(f"{a.url}/auth/me", headers=h).status_code == 401
               for h in cookies.values())  # and on A


# -- h12: roles ---------------------------------------------------------------------------


def _scopes(srv: Server, headers: dict[str, str]) -> list[str] | None:
    r = httpx.get(f"{srv.url}/auth/me", headers=headers)
    return list(r.json()["scopes"]) if r.status_code == 200 else None


@pytest.mark.subprocess  # two worker processes
def test_h12_role_change_reaches_sessions_and_ends_old_tokens(
        make_server: Callable[..., Server]) -> None:
    srv = make_server(workers=2)  # two processes: each has its own caches
    name, pw, _ = register(srv)
    done = srv.cli("users", "roles", name, "--role", "auditor")
    assert done.returncode == 0, done.stderr
    c = srv.client()
    assert c.login(name, pw).status_code == 200
    session = {"Cookie": f"{c.session_cookie}={c.session_value}"}
    token = c.token(name, pw).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    for _ in range(6):  # every worker has seen (and cached) the user, session and token
        assert "auditor" in (_scopes(srv, session) or [])
        assert "auditor" in (_scopes(srv, bearer) or [])

    done = srv.cli("users", "roles", name)  # no --role: none
    assert done.returncode == 0, done.stderr
    changed = time.monotonic()

    def dropped() -> bool:
        scopes = _scopes(srv, session)
        return scopes is not None and "auditor" not in scopes and _scopes(srv, bearer) is None

    assert eventually(dropped, within=1.0), (_scopes(srv, session), _scopes(srv, bearer))
    assert time.monotonic() - changed < 1.5
    assert _stays(dropped, 0.5, step=0.05)  # on every worker

    done = srv.cli("users", "roles", name, "--role", "editor", "--role", "viewer")
    assert done.returncode == 0, done.stderr
    assert eventually(lambda: {"editor", "viewer"} <= set(_scopes(srv, session) or []),
                      within=1.0)
    listed = json.loads(srv.cli("users", "list", "--json").stdout)
    assert [u["roles"] for u in listed if u["username"] == name] == [["editor", "viewer"]]
    fresh = c.token(name, pw).json()
    assert set(fresh["scope"].split()) == {"editor", "viewer"}
    assert _scopes(srv, {"Authorization": f"Bearer {fresh['access_token']}"}) is not None


# -- h20: eviction by real recency --------------------------------------------------------


def test_h20_session_cap_evicts_the_idle_session_not_the_active_one(
        make_server: Callable[..., Server]) -> None:
    srv = make_server(max_sessions_per_user=2)
    active, name, pw = signed_in(srv)
    srv.advance(1)
    idle, _, _ = signed_in(srv, name, pw)
    for _ in range(5):  # in use, within the touch interval: the stored last_seen lags
        srv.advance(5)
        assert active.get("/auth/me").status_code == 200
    srv.advance(1)
    third, _, _ = signed_in(srv, name, pw)
    assert active.get("/auth/me").status_code == 200
    assert idle.get("/auth/me").status_code == 401
    assert third.get("/auth/me").status_code == 200

