"""API keys / personal access tokens (issue 14): ``POST/GET /auth/api-keys``,
``DELETE /auth/api-keys/{id}``; an ``ag_`` bearer on ``/auth/me``, ``/auth/verify`` and the
one sign-in list; revocation, expiry, scopes, a disabled user; never stored as given."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.blackbox.support import (
    assert_error,
    eventually,
    new_name,
    parse_utc,
    register,
    signed_in,
)
from tests.conftest import Server
from tests.helpers import AuthClient

# The contract suite: run on SQLite and on PostgreSQL + Redis (tests/conftest.py).
ALL_BACKENDS = True

KEY = re.compile(r"^ag_[A-Za-z0-9_-]{43}$")
FIELDS = {"id", "name", "scopes", "created_at", "expires_at", "last_used_at"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def create(client: AuthClient, **body: Any) -> dict[str, Any]:
    r = client.unsafe("POST", "/auth/api-keys", json={"name": new_name("key"), **body})
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def me(server: Server, key: str) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        return c.get("/auth/me", headers=bearer(key))


def refused(r: httpx.Response) -> None:
    """Refused exactly as a bad bearer token is."""
    assert_error(r, 401, "invalid_token")
    assert 'error="invalid_token"' in r.headers.get("www-authenticate", "")


def test_create_shows_the_key_once_and_it_works_on_me_and_verify(server: Server) -> None:
    c, username, _ = signed_in(server)
    r = c.unsafe("POST", "/auth/api-keys", json={"name": "ci deploy"})
    assert r.status_code == 201, r.text
    assert "no-store" in r.headers.get("cache-control", "")
    body = r.json()
    assert set(body) == FIELDS | {"key"}, body
    assert KEY.match(body["key"]), body["key"]
    assert body["name"] == "ci deploy" and body["expires_at"] is None
    assert body["last_used_at"] is None
    parse_utc(body["created_at"])
    who = me(server, body["key"])
    assert who.status_code == 200, who.text
    assert who.json()["username"] == username
    assert who.json()["auth"] == "api_key"
    assert "csrf_token" not in who.json()
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        v = anon.get("/auth/verify", headers=bearer(body["key"]))
    assert v.status_code == 200, v.text
    assert v.headers["x-auth-username"] == username
    assert v.headers["x-auth-method"] == "api_key"
    # Listed without the key itself.
    listed = c.get("/auth/api-keys")
    assert listed.status_code == 200
    [entry] = listed.json()
    assert set(entry) == FIELDS
    assert entry["id"] == body["id"] and body["key"] not in listed.text
    assert entry["last_used_at"] is not None  # used just now, by /auth/me


def test_keys_are_distinct_and_per_user(server: Server) -> None:
    a, _, _ = signed_in(server)
    b, _, _ = signed_in(server)
    ka, kb = create(a), create(a)
    assert ka["key"] != kb["key"] and ka["id"] != kb["id"]
    assert b.get("/auth/api-keys").json() == []
    assert_error(b.unsafe("DELETE", f"/auth/api-keys/{ka['id']}"), 404)
    assert_error(b.unsafe("DELETE", f"/auth/sessions/{ka['id']}"), 404)
    assert me(server, ka["key"]).status_code == 200


def test_revoked_key_is_refused_like_a_bad_token(server: Server) -> None:
    c, _, _ = signed_in(server)
    k = create(c)
    assert me(server, k["key"]).status_code == 200
    r = c.unsafe("DELETE", f"/auth/api-keys/{k['id']}")
    assert r.status_code == 204, r.text
    revoked = me(server, k["key"])
    refused(revoked)
    unknown = me(server, "ag_" + "A" * 43)
    refused(unknown)
    bad_jwt = me(server, "eyJhbGciOiJFZERTQSJ9.e30.c2ln")
    assert revoked.json() == unknown.json() == bad_jwt.json()
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        refused(anon.get("/auth/verify", headers=bearer(k["key"])))
    assert c.get("/auth/api-keys").json() == []
    assert_error(c.unsafe("DELETE", f"/auth/api-keys/{k['id']}"), 404)


def test_key_in_the_one_sign_in_list_and_revoked_from_it(server: Server) -> None:
    c, _, _ = signed_in(server)
    k = create(c, expires_in=3600)
    entries = c.get("/auth/sessions").json()
    [entry] = [e for e in entries if e["kind"] == "api_key"]
    assert entry["id"] == k["id"] and entry["name"] == k["name"]
    assert entry["current"] is False and entry["last_used_at"] is None
    assert parse_utc(entry["expires_at"]) > parse_utc(entry["created_at"])
    assert me(server, k["key"]).status_code == 200
    [entry] = [e for e in c.get("/auth/sessions").json() if e["kind"] == "api_key"]
    assert entry["last_used_at"] is not None and k["key"] not in str(entry)
    # The key itself may not read the list (IPs, user agents) nor end the user's sign-ins.
    with httpx.Client(base_url=server.url, timeout=30) as machine:
        for method, path in (("GET", "/auth/sessions"), ("DELETE", "/auth/sessions"),
                             ("DELETE", f"/auth/sessions/{entry['id']}")):
            assert_error(machine.request(method, path, headers=bearer(k["key"])), 403,
                         "interactive_sign_in_required")
    assert c.get("/auth/me").status_code == 200
    r = c.unsafe("DELETE", f"/auth/sessions/{k['id']}")
    assert r.status_code == 204, r.text
    refused(me(server, k["key"]))
    assert not [e for e in c.get("/auth/sessions").json() if e["kind"] == "api_key"]
    assert c.get("/auth/me").status_code == 200  # the session that revoked it lives on


def test_an_api_key_cannot_manage_keys(server: Server) -> None:
    c, _, _ = signed_in(server)
    k = create(c)
    with httpx.Client(base_url=server.url, timeout=30) as machine:
        made = machine.post("/auth/api-keys", json={"name": "child"}, headers=bearer(k["key"]))
        listed = machine.get("/auth/api-keys", headers=bearer(k["key"]))
        gone = machine.delete(f"/auth/api-keys/{k['id']}", headers=bearer(k["key"]))
    for r in (made, listed, gone):
        assert_error(r, 403, "interactive_sign_in_required")
    assert len(c.get("/auth/api-keys").json()) == 1
    assert me(server, k["key"]).status_code == 200


def test_an_access_token_can_create_a_key(server: Server) -> None:
    username, password, _ = register(server)
    with server.client() as c:
        tok = c.token(username, password)
        assert tok.status_code == 200, tok.text
        at = tok.json()["access_token"]
        r = c.post("/auth/api-keys", json={"name": "from a token"}, headers=bearer(at))
    assert r.status_code == 201, r.text
    assert me(server, r.json()["key"]).json()["username"] == username


def test_creating_with_a_cookie_needs_csrf(server: Server) -> None:
    c, _, _ = signed_in(server)
    r = c.post("/auth/api-keys", json={"name": "x"}, headers={"Origin": c.origin})
    assert_error(r, 403, "csrf")
    assert c.get("/auth/api-keys").json() == []


def test_creating_needs_a_sign_in(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        assert_error(anon.post("/auth/api-keys", json={"name": "x"}), 401)
        assert_error(anon.get("/auth/api-keys"), 401)


@pytest.mark.parametrize("body", [
    {}, {"name": ""}, {"name": "  "}, {"name": 5}, {"name": "x" * 101}, {"name": "a\u0000b"},
    {"name": "x", "scopes": "read"}, {"name": "x", "scopes": [1]}, {"name": "x", "scopes": [""]},
    {"name": "x", "expires_in": 0}, {"name": "x", "expires_in": -5},
    {"name": "x", "expires_in": True}, {"name": "x", "expires_in": "60"},
    {"name": "x", "expires_in": 10**12}, {"name": "x", "extra": 1},
])
def test_bad_bodies_are_4xx(shared_client: AuthClient, body: dict[str, Any]) -> None:
    r = shared_client.unsafe("POST", "/auth/api-keys", json=body)
    assert 400 <= r.status_code < 500 and r.status_code not in (401, 403), r.text
    assert set(r.json()) == {"error", "detail"}
    assert shared_client.get("/auth/api-keys").json() == []


def test_scopes_are_a_subset_of_the_users(server: Server) -> None:
    username, password = server.new_user("scoped", roles=("reports", "billing"))
    c = server.client()
    assert c.login(username, password).status_code == 200
    everything = create(c)
    assert sorted(everything["scopes"]) == ["billing", "reports"]
    narrow = create(c, scopes=["reports"])
    assert narrow["scopes"] == ["reports"]
    assert me(server, narrow["key"]).json()["scopes"] == ["reports"]
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        ok = anon.get("/auth/verify?scope=reports", headers=bearer(narrow["key"]))
        no = anon.get("/auth/verify?scope=billing", headers=bearer(narrow["key"]))
    assert ok.status_code == 200
    assert_error(no, 403, "insufficient_scope")
    wider = c.unsafe("POST", "/auth/api-keys", json={"name": "x", "scopes": ["admin"]})
    assert_error(wider, 403, "insufficient_scope")
    empty = create(c, scopes=[])
    assert me(server, empty["key"]).json()["scopes"] == []
    # A role taken away takes its scope from the key at once; given back, it returns.
    assert server.cli("users", "roles", username, "--role", "billing").returncode == 0
    assert eventually(lambda: me(server, everything["key"]).json()["scopes"] == ["billing"])
    assert me(server, narrow["key"]).json()["scopes"] == []


def test_expired_key_is_refused(server: Server) -> None:
    c, _, _ = signed_in(server, remember=True)
    k = create(c, expires_in=120)
    assert me(server, k["key"]).status_code == 200
    server.advance(121)
    refused(me(server, k["key"]))
    assert c.get("/auth/api-keys").json() == []


def test_disabled_user_keys_stop_at_once(server: Server) -> None:
    c, username, _ = signed_in(server)
    k = create(c)
    assert me(server, k["key"]).status_code == 200
    assert server.cli("users", "disable", username).returncode == 0
    assert eventually(lambda: me(server, k["key"]).status_code == 401)
    refused(me(server, k["key"]))
    assert server.cli("users", "enable", username).returncode == 0
    assert eventually(lambda: me(server, k["key"]).status_code == 200)


def test_deleted_account_ends_its_keys(server: Server) -> None:
    c, _, password = signed_in(server)
    k = create(c)
    r = c.unsafe("DELETE", "/auth/account", json={"current_password": password})
    assert r.status_code == 204, r.text
    refused(me(server, k["key"]))


def test_log_out_everywhere_keeps_keys(server: Server) -> None:
    c, _, _ = signed_in(server)
    k = create(c)
    assert c.unsafe("DELETE", "/auth/sessions").status_code == 204
    assert c.get("/auth/me").status_code == 401
    assert me(server, k["key"]).status_code == 200


def test_rfc7009_revoke_ends_a_key(server: Server) -> None:
    c, _, _ = signed_in(server)
    k = create(c)
    with httpx.Client(base_url=server.url, timeout=30) as anyone:
        r = anyone.post("/auth/revoke", data={"token": k["key"]})
    assert r.status_code == 200
    refused(me(server, k["key"]))
    assert c.get("/auth/api-keys").json() == []


def test_logout_with_a_key_ends_that_key(server: Server) -> None:
    c, _, _ = signed_in(server)
    k, other = create(c), create(c)
    with httpx.Client(base_url=server.url, timeout=30) as machine:
        assert machine.post("/auth/logout", headers=bearer(k["key"])).status_code == 204
    refused(me(server, k["key"]))
    assert me(server, other["key"]).status_code == 200
    assert c.get("/auth/me").status_code == 200


def test_never_stored_or_logged_as_given(server: Server) -> None:
    c, username, _ = signed_in(server)
    k = create(c, name="scan me")
    assert me(server, k["key"]).status_code == 200
    refused(me(server, k["key"][:-1] + ("A" if k["key"][-1] != "A" else "B")))
    assert c.unsafe("DELETE", f"/auth/api-keys/{k['id']}").status_code == 204
    refused(me(server, k["key"]))
    secret = k["key"].removeprefix("ag_")

    def audited() -> bool:
        return "api_key.revoked" in database_dump(server)

    assert eventually(audited, within=5)
    dump = database_dump(server)
    assert username in dump and "scan me" in dump  # the dump is real
    assert secret not in dump and secret.lower() not in dump.lower()
    log = server.log()
    assert "api_key.created" in log or "API key" in log  # the log is real
    assert secret not in log


def database_dump(server: Server) -> str:
    url = str(server.settings["database_url"])
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(server.db_path) as conn:
            return "\n".join(conn.iterdump())
    import asyncio

    import asyncpg

    async def dump() -> str:
        conn = await asyncpg.connect(url)
        try:
            tables = [r["tablename"] for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
            out = []
            for table in tables:
                out += [repr(dict(r)) for r in await conn.fetch(f'SELECT * FROM "{table}"')]
            return "\n".join(out)
        finally:
            await conn.close()

    return asyncio.run(dump())


CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
KEY_ON_PAGE = re.compile(r'<code id="api-key">(ag_[A-Za-z0-9_-]{43})</code>')


def test_account_page_creates_lists_and_revokes_a_key(server: Server) -> None:
    import html

    username, password = server.new_user("paged", roles=("reports", "billing"))
    c = server.client()
    assert c.login(username, password).status_code == 200
    page = c.get("/account")
    assert page.status_code == 200 and 'action="/account/api-key-create"' in page.text
    assert 'name="scope:reports"' in page.text and 'name="scope:billing"' in page.text
    csrf = html.unescape(CSRF_FIELD.search(page.text).group(1))  # type: ignore[union-attr]
    form = {"csrf_token": csrf, "name": "laptop script", "scope:reports": "1",
            "expires_days": "30"}
    forged = c.post("/account/api-key-create", data={**form, "csrf_token": "nope"},
                    headers={"Origin": c.origin})
    assert forged.status_code == 403 and not KEY_ON_PAGE.search(forged.text)
    made = c.post("/account/api-key-create", data=form, headers={"Origin": c.origin})
    assert made.status_code == 200, made.text
    assert "no-store" in made.headers.get("cache-control", "")
    found = KEY_ON_PAGE.search(made.text)
    assert found, made.text
    key = found.group(1)
    who = me(server, key)
    assert who.status_code == 200 and who.json()["scopes"] == ["reports"]
    [listed] = c.get("/auth/api-keys").json()
    assert listed["name"] == "laptop script" and listed["expires_at"] is not None
    page = c.get("/account").text
    assert "laptop script" in page and "API key" in page and key not in page
    r = c.post("/account/revoke", data={"csrf_token": csrf, "id": listed["id"]},
               headers={"Origin": c.origin})
    assert r.status_code == 303, r.text
    refused(me(server, key))
    assert "laptop script" not in c.get("/account").text
    assert c.get("/auth/me").status_code == 200
