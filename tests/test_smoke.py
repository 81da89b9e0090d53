"""The flow a new user tries first, end to end over HTTP."""

from __future__ import annotations

from tests.conftest import Server

# The contract suite: run on SQLite and on PostgreSQL + Redis (tests/conftest.py).
ALL_BACKENDS = True


def test_register_login_me_logout(server: Server) -> None:
    c = server.client()
    r = c.post("/auth/register", json={"username": "smoke-alice",
                                       "password": "a long enough passphrase"})
    assert r.status_code == 201, r.text
    assert c.login("smoke-alice", "a long enough passphrase").status_code == 200
    old = c.session_value
    me = c.get("/auth/me")
    assert me.status_code == 200 and me.json()["auth"] == "session"
    assert c.unsafe("POST", "/auth/logout").status_code == 204
    r = c.get("/auth/me", headers={"Cookie": f"{c.session_cookie}={old}"})
    assert r.status_code == 401
