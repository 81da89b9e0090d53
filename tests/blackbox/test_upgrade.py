"""Upgrading: a database made by the previous release (0.1.0's schema, tests/data), with a
user and a live session in it, is migrated by the new server on start; the user signs in,
the session still works, and ``migrate --dry-run`` / ``--sql`` tell a DBA what will run."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import sqlite3
import time
from pathlib import Path

import argon2
import pytest

from tests.conftest import ROOT, Server

pytestmark = pytest.mark.subprocess  # an older release's database, served by real processes

PASSWORD = "upgraded user passphrase"


def old_rows() -> tuple[list[str], str]:
    """Inserts of a user and a session as 0.1.0 wrote them, and the session's cookie."""
    now = time.time()
    cookie = secrets.token_urlsafe(32)
    pw_hash = argon2.PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1).hash(
        PASSWORD)
    digest = hashlib.sha256(cookie.encode()).hexdigest()
    return [
        "INSERT INTO users (id, username, username_key, password_hash, roles, disabled, "
        f"created_at, tokens_valid_after) VALUES ('u0000000000000000000000000000001', "
        f"'olduser', 'olduser', '{pw_hash}', '[\"staff\"]', false, {now}, 0)",
        "INSERT INTO sessions (id, token_hash, user_id, csrf_token, created_at, last_seen_at, "
        "expires_at, idle_ttl, remember, ip, user_agent) VALUES ("
        f"'s0000000000000000000000000000001', '{digest}', 'u0000000000000000000000000000001', "
        f"'csrf-old', {now}, {now}, {now + 3600}, 1800, false, '127.0.0.1', 'old')",
    ], cookie


def check_upgraded(srv: Server, cookie: str) -> None:
    with srv.client() as c:
        me = c.get("/auth/me", headers={"Cookie": f"{c.session_cookie}={cookie}"})
        assert me.status_code == 200 and me.json()["username"] == "olduser"
        assert me.json()["roles"] == ["staff"]
        assert me.json()["amr"] == ["pwd"]  # migration 7's column default, on an old row
        assert me.json()["auth_time"] > 0
        assert c.login("olduser", PASSWORD).status_code == 200
    assert srv.cli("migrate", "--dry-run").stderr.strip() == "0 pending migration(s)"


def test_sqlite_database_of_the_previous_release_upgrades(tmp_path: Path) -> None:
    db = tmp_path / "authgate.db"
    rows, cookie = old_rows()
    conn = sqlite3.connect(db)
    conn.executescript((ROOT / "tests/data/schema-0.1.0-sqlite.sql").read_text())
    for row in rows:
        conn.execute(row.replace("false", "0"))
    conn.commit()
    conn.close()
    srv = Server(tmp_path, {})
    pending = srv.cli("migrate", "--dry-run")
    assert pending.returncode == 0 and pending.stdout.startswith("4\t"), pending
    sql = srv.cli("migrate", "--sql")
    assert "CREATE TABLE audit_events" in sql.stdout and sql.returncode == 0
    assert sqlite3.connect(db).execute(  # --dry-run and --sql changed nothing
        "SELECT max(version) FROM schema_migrations").fetchone() == (3,)
    srv.start()
    try:
        check_upgraded(srv, cookie)
    finally:
        srv.stop()


def test_postgresql_database_of_the_previous_release_upgrades(tmp_path: Path,
                                                             pg_url: str) -> None:
    import asyncpg

    rows, cookie = old_rows()

    async def load() -> None:
        conn = await asyncpg.connect(pg_url.replace("postgresql://", "postgres://"))
        try:
            await conn.execute((ROOT / "tests/data/schema-0.1.0-postgresql.sql").read_text())
            for row in rows:
                await conn.execute(row)
        finally:
            await conn.close()

    asyncio.run(load())
    srv = Server(tmp_path, {"database_url": pg_url})
    assert srv.cli("migrate", "--dry-run").stdout.startswith("4\t")
    srv.start()
    try:
        check_upgraded(srv, cookie)
    finally:
        srv.stop()
