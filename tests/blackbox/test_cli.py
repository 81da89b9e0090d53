"""The ``authgate`` command line against a running server's database (contract §1), and
what lands in that database (contract §2 "Secrets are never stored as given")."""

from __future__ import annotations

import hashlib
import json
import socket
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.blackbox.support import (
    ARGON2_PREFIX,
    assert_error,
    eventually,
    me_status,
    new_name,
    new_password,
    one_line_error,
    register,
    signed_in,
)
from tests.conftest import AUTHGATE, Server, env_for, free_port

pytestmark = pytest.mark.subprocess  # the CLI itself, against a running server (restart included)


def rows(db: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db, timeout=10)
    try:
        return list(conn.execute(sql, args))
    finally:
        conn.close()


def users_list(server: Server) -> str:
    done = server.cli("users", "list")
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_users_create_with_roles_and_list(server: Server) -> None:
    username, password = new_name("cli"), new_password()
    done = server.cli("users", "create", username, "--password-stdin", "--role", "editor",
                      "--role", "reports:read", input=password + "\n")
    assert done.returncode == 0, done.stderr
    assert username in done.stdout
    assert password not in done.stdout + done.stderr
    listed = users_list(server)
    assert "argon2" not in listed and password not in listed
    line = next(line for line in listed.splitlines() if username in line)
    assert "editor" in line and "reports:read" in line
    c, _, _ = signed_in(server, username, password)
    me = c.get("/auth/me").json()
    assert me["roles"] == ["editor", "reports:read"]
    assert set(me["scopes"]) == {"editor", "reports:read"}


def test_users_create_refuses_taken_name_and_weak_password(server: Server) -> None:
    username, _, _ = register(server)
    taken = server.cli("users", "create", username, "--password-stdin",
                       input=new_password() + "\n")
    assert taken.returncode != 0
    one_line_error(taken.stderr)
    weak = server.cli("users", "create", new_name("weak"), "--password-stdin",
                      input="passwordpassword\n")
    assert weak.returncode != 0
    one_line_error(weak.stderr)
    assert "common" in weak.stderr.lower()


@pytest.mark.parametrize("command", [("users", "disable"), ("users", "set-password")])
def test_unknown_user_is_one_clear_line(server: Server, command: tuple[str, str]) -> None:
    ghost = new_name("ghost")
    done = server.cli(*command, ghost, *(["--password-stdin"] if "set" in command[1] else []),
                      input=new_password() + "\n")
    assert done.returncode != 0
    one_line_error(done.stderr)
    assert ghost in done.stderr


def test_disable_ends_sessions_and_tokens_enable_allows_login(server: Server) -> None:
    a, username, password = signed_in(server)
    b, _, _ = signed_in(server, username, password)
    access = server.client().token(username, password).json()["access_token"]
    bearer = {"Authorization": f"Bearer {access}"}
    done = server.cli("users", "disable", username)
    assert done.returncode == 0, done.stderr
    # Contract §2: revocation takes effect within 1 s.
    assert eventually(lambda: me_status(a) == 401 and me_status(b) == 401, within=1.0)
    assert server.client().get("/auth/me", headers=bearer).status_code == 401
    assert "disabled" in next(ln for ln in users_list(server).splitlines() if username in ln)
    # AUTHN-01: a disabled user's correct password gets the ordinary failure.
    refused = server.client().post("/auth/login", json={"username": username,
                                                        "password": password})
    unknown = server.client().post("/auth/login", json={"username": new_name("nobody"),
                                                        "password": password})
    assert_error(refused, 401, "invalid_credentials")
    assert refused.content == unknown.content
    done = server.cli("users", "enable", username)
    assert done.returncode == 0, done.stderr
    c, _, _ = signed_in(server, username, password)
    assert me_status(c) == 200


def test_delete_ends_everything_and_frees_the_name(server: Server) -> None:
    a, username, password = signed_in(server)
    access = server.client().token(username, password).json()["access_token"]
    bearer = {"Authorization": f"Bearer {access}"}
    refused = server.cli("users", "delete", username, input="n\n")  # asks first
    assert refused.returncode != 0 and me_status(a) == 200
    done = server.cli("users", "delete", username, "--yes")
    assert done.returncode == 0, done.stderr
    assert eventually(lambda: me_status(a) == 401, within=1.0)
    assert server.client().get("/auth/me", headers=bearer).status_code == 401
    assert username not in users_list(server)
    assert server.client().login(username, password).status_code == 401
    ghost = server.cli("users", "delete", username, "--yes")
    assert ghost.returncode != 0
    one_line_error(ghost.stderr)


def test_set_password_ends_sessions(server: Server) -> None:
    a, username, password = signed_in(server)
    new = new_password()
    done = server.cli("users", "set-password", username, "--password-stdin", input=new + "\n")
    assert done.returncode == 0, done.stderr
    assert new not in done.stdout + done.stderr
    assert eventually(lambda: me_status(a) == 401, within=1.0)
    assert server.client().login(username, password).status_code == 401
    assert server.client().login(username, new).status_code == 200


def test_set_password_applies_the_policy(server: Server) -> None:
    a, username, password = signed_in(server)
    done = server.cli("users", "set-password", username, "--password-stdin", input="short\n")
    assert done.returncode != 0
    one_line_error(done.stderr)
    assert me_status(a) == 200
    assert server.client().login(username, password).status_code == 200


def test_database_holds_no_raw_secrets(make_server: Callable[..., Server]) -> None:
    server = make_server(password_hash_preset="default")  # pins the production hash
    username, password, _ = register(server)
    c, _, _ = signed_in(server, username, password)
    c2, _, _ = signed_in(server, username, password, remember=True)
    tok = server.client().token(username, password).json()
    conn = sqlite3.connect(server.db_path, timeout=10)
    try:
        dump = "\n".join(conn.iterdump())
        hashes = [r[0] for r in conn.execute("SELECT password_hash FROM users")]
        stored = {r[0] for r in conn.execute("SELECT token_hash FROM sessions")}
    finally:
        conn.close()
    for secret in (c.session_value, c2.session_value, tok["refresh_token"], password):
        assert secret and secret not in dump
    assert hashes and all(h.startswith(ARGON2_PREFIX) for h in hashes), hashes
    # The session cookie is kept as its SHA-256 (contract §3).
    for client in (c, c2):
        value = client.session_value or ""
        assert hashlib.sha256(value.encode()).hexdigest() in stored


def test_sessions_purge_deletes_expired_sessions(server: Server) -> None:
    short_lived, username, password = signed_in(server)
    remembered, _, _ = signed_in(server, username, password, remember=True)
    user_id = short_lived.get("/auth/me").json()["id"]
    count = "SELECT count(*) FROM sessions WHERE user_id = ?"
    assert rows(server.db_path, count, user_id) == [(2,)]
    server.advance(31 * 60)  # past the idle timeout of the non-remembered one
    assert me_status(short_lived) == 401
    done = server.cli("sessions", "purge")
    assert done.returncode == 0, done.stderr
    assert rows(server.db_path, count, user_id) == [(1,)]
    assert rows(server.db_path, "SELECT remember FROM sessions WHERE user_id = ?",
                user_id) == [(1,)]
    assert me_status(remembered) == 200


def test_sessions_survive_a_restart(server: Server) -> None:
    c, _, _ = signed_in(server)
    remembered, _, _ = signed_in(server, remember=True)
    server.restart()
    assert me_status(c) == 200
    assert me_status(remembered) == 200
    # The CSRF token is still the session's after the restart.
    assert c.unsafe("POST", "/auth/logout").status_code == 204
    assert me_status(c) == 401


def serve(env_extra: dict[str, str], tmp: Path, port: int) -> subprocess.CompletedProcess[str]:
    env = env_for({"database_url": f"sqlite:///{tmp / 'authgate.db'}"})
    env.update(env_extra)
    try:
        return subprocess.run([AUTHGATE, "serve", "--port", str(port)], cwd=tmp, env=env,
                              capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired as exc:  # it started: the test failed
        raise AssertionError(f"authgate serve kept running: {exc.stderr!r}") from None


@pytest.mark.parametrize("env", [
    {"AUTHGATE_SESSION_IDLE_TTL": "abc"},
    {"AUTHGATE_PUBLIC_URL": "not a url"},
    {"AUTHGATE_DATABASE_URL": "sqlite:////nonexistent/dir/authgate.db"},
    {"AUTHGATE_DATABASE_URL": "postgresql://nobody:secret@127.0.0.1:1/none"},
    {"AUTHGATE_REDIS_URL": "redis://:secret@127.0.0.1:1/0"},
], ids=["ttl-not-a-number", "url", "db-dir-missing", "db-unreachable", "redis-unreachable"])
def test_serve_bad_setting_is_one_line_and_nonzero(tmp_path: Path, env: dict[str, str]) -> None:
    done = serve(env, tmp_path, free_port())
    assert done.returncode != 0
    one_line_error(done.stderr)
    assert "secret" not in done.stderr  # credentials in a URL are not echoed
    name = next(iter(env)).removeprefix("AUTHGATE_")
    if name == "REDIS_URL":
        assert "cannot reach Redis" in done.stderr, done.stderr
    elif "DATABASE" not in name:
        assert name in done.stderr.upper() or name.lower() in done.stderr.lower(), done.stderr


def test_commands_work_through_a_redis_outage(tmp_path: Path) -> None:
    """A command changes the database, whose revocation log every server reads: an
    unreachable Redis is one warning line, not a failed ``users disable``."""
    env = env_for({"database_url": f"sqlite:///{tmp_path / 'a.db'}",
                   "redis_url": "redis://127.0.0.1:1/0"})
    name = new_name("cli")

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([AUTHGATE, *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=30, input=stdin)

    made = run("users", "create", name, "--password-stdin", stdin=new_password() + "\n")
    assert made.returncode == 0, made.stderr
    assert "cannot reach Redis" in made.stderr and "Traceback" not in made.stderr
    assert len(made.stderr.strip().splitlines()) == 1, made.stderr
    assert run("users", "disable", name).returncode == 0
    assert "disabled" in next(line for line in run("users", "list").stdout.splitlines()
                              if name in line)


def test_serve_port_in_use_is_one_line_and_nonzero(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = serve({}, tmp_path, port)
    assert done.returncode != 0
    one_line_error(done.stderr)
    assert str(port) in done.stderr


@pytest.mark.parametrize("toml", ['session_idle_ttl = "abc"\n', "this is = = not toml\n",
                                  'no_such_setting = 1\n'], ids=["bad-value", "bad-toml",
                                                                  "unknown-key"])
def test_serve_bad_config_file_is_one_line_and_nonzero(tmp_path: Path, toml: str) -> None:
    config = tmp_path / "authgate.toml"
    config.write_text(toml)
    env = env_for({})
    done = subprocess.run([AUTHGATE, "serve", "--port", str(free_port()), "--config",
                           str(config)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=20)
    assert done.returncode != 0
    one_line_error(done.stderr)


def test_serve_with_no_configuration_uses_the_embedded_default(tmp_path: Path) -> None:
    env = env_for({})
    port = free_port()
    proc = subprocess.Popen([AUTHGATE, "serve", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz",
                                 timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        assert eventually(healthy, within=20, step=0.1), proc.poll()
        db = tmp_path / "authgate.db"
        assert db.exists()
        tables = {r[0] for r in rows(db, "SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"users", "sessions"} <= tables
        keys = rows(db, "SELECT count(*) FROM signing_keys")
        assert keys != [(0,)]  # a signing key generated on first start, kept in the DB
        # AUTHN-08: a fresh install has no accounts at all, so no default credentials.
        assert rows(db, "SELECT count(*) FROM users") == [(0,)]
        for username, password in (("admin", "admin"), ("admin", "password"),
                                   ("root", "root")):
            r = httpx.post(f"http://127.0.0.1:{port}/auth/login",
                           json={"username": username, "password": password})
            assert r.status_code == 401
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()


def test_api_keys_create_list_revoke(server: Server) -> None:
    """``authgate api-keys``: a key for a service account without an admin sign-in, shown
    once, listed without itself, revoked on the running server; audited as the operator."""
    username, _ = server.new_user("bot", roles=("reports:read", "billing"))
    done = server.cli("api-keys", "create", username, "--name", "ci", "--scope",
                      "reports:read")
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert key.startswith("ag_") and "shown once" in done.stderr
    me = httpx.get(f"{server.url}/auth/me", headers={"Authorization": f"Bearer {key}"})
    assert me.status_code == 200, me.text
    assert me.json()["auth"] == "api_key" and me.json()["scopes"] == ["reports:read"]
    listed = server.cli("api-keys", "list", username, "--json")
    assert listed.returncode == 0, listed.stderr
    (entry,) = json.loads(listed.stdout)
    assert entry["name"] == "ci" and entry["scopes"] == ["reports:read"]
    assert key not in listed.stdout + server.cli("api-keys", "list", username).stdout
    assert rows(server.db_path, "SELECT count(*) FROM api_keys WHERE digest = ?",
                hashlib.sha256(key.encode()).hexdigest()) == [(1,)]
    # a scope the user's roles do not grant, an unknown user: one line, non-zero
    for args in (("--scope", "admin:all"), ()):
        name = username if args else "nobody-like-this"
        bad = server.cli("api-keys", "create", name, "--name", "x", *args)
        assert bad.returncode != 0 and bad.stdout == ""
        one_line_error(bad.stderr)
    revoked = server.cli("api-keys", "revoke", username, entry["id"])
    assert revoked.returncode == 0, revoked.stderr
    assert eventually(lambda: httpx.get(f"{server.url}/auth/me", headers={
        "Authorization": f"Bearer {key}"}).status_code == 401, 3)
    assert server.cli("api-keys", "revoke", username).returncode == 2  # KEY_ID or --all
    events = server.cli("audit", "list", "--json", "--user", username).stdout
    assert [json.loads(line)["actor"] for line in events.splitlines()
            if json.loads(line)["type"].startswith("api_key.")] == ["operator", "operator"]
