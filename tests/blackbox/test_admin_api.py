"""The admin API (``/admin/*``, issue 14): an admin drives every endpoint; a signed-in user
without the ``authgate:admin`` scope gets 403 ``insufficient_scope`` on each, an anonymous
caller 401; every action ends what it should and writes its audit event; CSRF as for the
rest of the API. On SQLite and PostgreSQL + Redis (``contract_backend``)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.blackbox.support import assert_error, eventually, new_name, new_password
from tests.conftest import Server, backend_server
from tests.helpers import AuthClient

ALL_BACKENDS = True

#: Role ``admin`` maps to the admin scope (ROLE_SCOPES), as an operator would set it.
SETTINGS = {"role_scopes": "admin=authgate:admin"}
UID = "0" * 32  # a well-formed id nobody has

#: Every admin operation: (method, path template, JSON body or None).
OPERATIONS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/admin/users", None),
    ("POST", "/admin/users", {"username": "x-never", "password": "never created here"}),
    ("GET", "/admin/users/{uid}", None),
    ("PATCH", "/admin/users/{uid}", {"disabled": True}),
    ("DELETE", "/admin/users/{uid}", None),
    ("POST", "/admin/users/{uid}/password", {"password": "never set by this caller"}),
    ("POST", "/admin/users/{uid}/mfa-reset", None),
    ("POST", "/admin/users/{uid}/api-keys", {"name": "never made"}),
    ("GET", "/admin/users/{uid}/sessions", None),
    ("DELETE", "/admin/users/{uid}/sessions", None),
    ("DELETE", "/admin/users/{uid}/sessions/{sid}", None),
    ("GET", "/admin/users/{uid}/audit", None),
]


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           contract_backend: str) -> Iterator[Server]:
    with backend_server(request, tmp_path_factory, contract_backend, **SETTINGS) as srv:
        yield srv


@pytest.fixture(scope="module")
def admin(server: Server) -> AuthClient:
    """A client signed in (session cookie) as a user with role ``admin``."""
    name, pw = server.new_user("admin", roles=("admin",))
    c = server.client()
    assert c.login(name, pw).status_code == 200
    c.headers["X-Test-Name"] = name
    return c


def bearer(server: Server, username: str, password: str, **extra: Any) -> dict[str, str]:
    r = server.client().token(username, password, **extra)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def me(admin: AuthClient) -> dict[str, Any]:
    body: dict[str, Any] = admin.get("/auth/me").json()
    return body


def call(client: AuthClient | httpx.Client, method: str, path: str,
         body: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
    if isinstance(client, AuthClient) and method != "GET":
        return client.unsafe(method, path, json=body, **kwargs)
    return client.request(method, path, json=body, **kwargs)


def audit_types(admin: AuthClient, uid: str) -> list[str]:
    r = admin.get(f"/admin/users/{uid}/audit")
    assert r.status_code == 200, r.text
    return [e["type"] for e in r.json()["events"]]


def audited(admin: AuthClient, uid: str, event: str) -> dict[str, Any]:
    """The newest ``event`` of the user (waiting for the background writer), with the
    admin as its actor."""
    found: list[dict[str, Any]] = []

    def check() -> bool:
        r = admin.get(f"/admin/users/{uid}/audit")
        found[:] = [e for e in r.json()["events"] if e["type"] == event]
        return bool(found)

    assert eventually(check, within=3), audit_types(admin, uid)
    newest = found[0]
    assert newest["actor"] == "admin", newest
    assert newest["data"]["actor_id"] == me(admin)["id"], newest
    return newest


def test_anonymous_401_and_non_admin_403_on_every_operation(server: Server) -> None:
    name, pw = server.new_user("plain", roles=("reports",))
    plain = server.client()
    assert plain.login(name, pw).status_code == 200
    uid = plain.get("/auth/me").json()["id"]
    token = bearer(server, name, pw)
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        for method, template, body in OPERATIONS:
            path = template.format(uid=uid, sid="s" * 32)
            r = call(anon, method, path, body)
            assert_error(r, 401)
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert_error(call(plain, method, path, body), 403, "insufficient_scope")
            r = call(anon, method, path, body, headers=token)
            assert_error(r, 403, "insufficient_scope")
            assert 'scope="authgate:admin"' in r.headers["www-authenticate"]
    # Nothing happened: the non-admin is still signed in, not disabled, "x-never" absent.
    assert plain.get("/auth/me").status_code == 200
    assert server.client().login(name, pw).status_code == 200


def test_list_search_and_cursor_pagination(server: Server, admin: AuthClient) -> None:
    tag = new_name("pg").lower()
    made = []
    for i in range(5):
        r = admin.unsafe("POST", "/admin/users", json={
            "username": f"{tag}-{i}", "password": new_password(),
            "email": f"{tag}-{i}@Example.org"})
        assert r.status_code == 201, r.text
        made.append(r.json())
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"q": tag.upper(), "limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = admin.get("/admin/users", params=params)
        assert r.status_code == 200, r.text
        assert "no-store" in r.headers["cache-control"]
        page = r.json()
        assert set(page) == {"users", "next_cursor"}
        assert len(page["users"]) <= 2
        seen += [u["username"] for u in page["users"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))  # base64url
    assert seen == [f"{tag}-{i}" for i in range(5)]  # in username order, each once
    first = admin.get("/admin/users", params={"q": f"{tag}-3@example"}).json()["users"]
    assert [u["username"] for u in first] == [f"{tag}-3"]  # the address, any case
    u = first[0]
    assert set(u) >= {"id", "username", "roles", "email", "email_verified", "created_at",
                      "disabled"} and u["disabled"] is False
    everyone = admin.get("/admin/users").json()
    assert 0 < len(everyone["users"]) <= 50
    assert admin.get("/admin/users", params={"q": "%"}).json()["users"] == []  # literal %
    for bad in ({"limit": "0"}, {"limit": "201"}, {"limit": "x"}, {"cursor": "!!"},
                {"cursor": base64.urlsafe_b64encode(b"nope").decode()}, {"q": "a\x00"}):
        assert_error(admin.get("/admin/users", params=bad), 400, "invalid_request")


def test_create_show_and_bad_input(server: Server, admin: AuthClient) -> None:
    name = new_name("made")
    pw = new_password()
    r = admin.unsafe("POST", "/admin/users", json={
        "username": name, "password": pw, "roles": ["reports", "reports"],
        "email": f"{name}@example.org", "email_verified": True})
    assert r.status_code == 201, r.text
    user = r.json()
    assert user["username"] == name and user["roles"] == ["reports"]
    assert user["email_verified"] is True and user["disabled"] is False
    c = server.client()
    assert c.login(name, pw).status_code == 200
    shown = admin.get(f"/admin/users/{user['id']}")
    assert shown.status_code == 200
    d = shown.json()
    assert d["factors"] == {"totp": "off", "recovery_codes_left": 0}
    assert eventually(lambda: admin.get(f"/admin/users/{user['id']}").json()
                      ["last_sign_in"] is not None, within=3)
    last = admin.get(f"/admin/users/{user['id']}").json()["last_sign_in"]
    assert last["ip"] == "127.0.0.1" and last["at"].endswith("Z")
    audited(admin, user["id"], "user.created")

    # No password: the account exists, and no password opens it.
    nopw = admin.unsafe("POST", "/admin/users", json={"username": new_name("nopw")})
    assert nopw.status_code == 201, nopw.text
    assert_error(admin.unsafe("POST", "/admin/users", json={"username": name,
                                                            "password": new_password()}),
                 409, "username_taken")
    for body in ({"username": new_name(), "password": "short"},):
        assert_error(admin.unsafe("POST", "/admin/users", json=body), 422, "password_policy")
    for body in ({}, {"username": 5}, {"username": new_name(), "roles": "admin"},
                 {"username": new_name(), "roles": ["a b"]}, {"username": new_name(),
                                                            "extra": 1},
                 {"username": new_name(), "email_verified": True}):
        assert_error(admin.unsafe("POST", "/admin/users", json=body), 400)
    r = admin.unsafe("POST", "/admin/users", content=b'{"username":"a","username":"b"}',
                     headers={"Content-Type": "application/json"})
    assert_error(r, 400)
    assert_error(admin.unsafe("POST", "/admin/users", json={"username": new_name(),
                                                            "email": "not an address"}),
                 422, "invalid_email")
    for path in (f"/admin/users/{UID}", "/admin/users/a%00b", f"/admin/users/{'x' * 65}"):
        assert_error(admin.get(path), 404, "not_found")
        assert_error(admin.unsafe("PATCH", path, json={"disabled": True}), 404)


def test_disable_enable_and_roles_take_effect_at_once(server: Server,
                                                      admin: AuthClient) -> None:
    name, pw = server.new_user("victim", roles=("reports",))
    victim = server.client()
    assert victim.login(name, pw).status_code == 200
    uid = victim.get("/auth/me").json()["id"]
    token = bearer(server, name, pw)
    assert victim.get("/auth/me", headers=token).status_code == 200

    r = admin.unsafe("PATCH", f"/admin/users/{uid}", json={"roles": ["reports", "extra"]})
    assert r.status_code == 200 and r.json()["roles"] == ["reports", "extra"]
    assert victim.get("/auth/me").json()["scopes"] == ["reports", "extra"]  # session: now
    assert victim.get("/auth/me", headers=token).status_code == 401  # old roles' token
    audited(admin, uid, "user.roles_changed")

    token = bearer(server, name, pw)
    r = admin.unsafe("PATCH", f"/admin/users/{uid}", json={"disabled": True})
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert victim.get("/auth/me").status_code == 401
    assert victim.get("/auth/me", headers=token).status_code == 401
    assert server.client().login(name, pw).status_code == 401
    assert admin.get(f"/admin/users/{uid}").json()["disabled"] is True
    audited(admin, uid, "user.disabled")

    r = admin.unsafe("PATCH", f"/admin/users/{uid}", json={"disabled": False})
    assert r.status_code == 200 and r.json()["disabled"] is False
    assert server.client().login(name, pw).status_code == 200
    audited(admin, uid, "user.enabled")
    for body in ({"disabled": "yes"}, {"roles": [1]}, {"nope": True}):
        assert_error(admin.unsafe("PATCH", f"/admin/users/{uid}", json=body), 400)


def test_sessions_list_and_revoke_one_and_all(server: Server, admin: AuthClient) -> None:
    name, pw = server.new_user("lister")
    a, b = server.client(), server.client()
    assert a.login(name, pw).status_code == 200
    assert b.login(name, pw).status_code == 200
    uid = a.get("/auth/me").json()["id"]
    token = bearer(server, name, pw)
    r = admin.get(f"/admin/users/{uid}/sessions")
    assert r.status_code == 200
    entries = r.json()
    assert sorted(e["kind"] for e in entries) == ["session", "session", "token"]
    assert not any(e["current"] for e in entries)
    mine = {e["id"] for e in a.get("/auth/sessions").json()}
    assert mine == {e["id"] for e in entries}  # the user's own list, the same entries
    a_id = next(e["id"] for e in a.get("/auth/sessions").json() if e["current"])

    assert admin.unsafe("DELETE", f"/admin/users/{uid}/sessions/{a_id}").status_code == 204
    assert a.get("/auth/me").status_code == 401
    assert b.get("/auth/me").status_code == 200
    audited(admin, uid, "session.revoked")
    assert_error(admin.unsafe("DELETE", f"/admin/users/{uid}/sessions/{a_id}"), 404)
    # Another user's entry is not found through this user.
    admin_sid = next(e["id"] for e in admin.get("/auth/sessions").json() if e["current"])
    assert_error(admin.unsafe("DELETE", f"/admin/users/{uid}/sessions/{admin_sid}"), 404)
    assert admin.get("/auth/me").status_code == 200

    assert admin.unsafe("DELETE", f"/admin/users/{uid}/sessions").status_code == 204
    assert b.get("/auth/me").status_code == 401
    assert b.get("/auth/me", headers=token).status_code == 401
    assert admin.get(f"/admin/users/{uid}/sessions").json() == []
    audited(admin, uid, "sign_out.everywhere")


def test_password_mfa_reset_and_delete(server: Server, admin: AuthClient) -> None:
    name, pw = server.new_user("reset")
    c = server.client()
    assert c.login(name, pw).status_code == 200
    uid = c.get("/auth/me").json()["id"]
    assert_error(admin.unsafe("POST", f"/admin/users/{uid}/password",
                              json={"password": "short"}), 422, "password_policy")
    new = new_password()
    r = admin.unsafe("POST", f"/admin/users/{uid}/password", json={"password": new})
    assert r.status_code == 204
    assert c.get("/auth/me").status_code == 401
    assert server.client().login(name, pw).status_code == 401
    assert c.login(name, new).status_code == 200
    audited(admin, uid, "password.changed")

    assert admin.unsafe("POST", f"/admin/users/{uid}/mfa-reset").status_code == 204
    assert c.get("/auth/me").status_code == 401  # every sign-in ends, as the CLI's
    assert audited(admin, uid, "mfa.disabled")["data"]["method"] == "reset"

    assert c.login(name, new).status_code == 200
    assert admin.unsafe("DELETE", f"/admin/users/{uid}").status_code == 204
    assert c.get("/auth/me").status_code == 401
    assert_error(admin.get(f"/admin/users/{uid}"), 404)
    assert_error(admin.unsafe("DELETE", f"/admin/users/{uid}"), 404)
    assert server.client().login(name, new).status_code == 401
    # The audit trail outlives the user.
    assert audited(admin, uid, "user.deleted")["ip"] == "127.0.0.1"


def test_audit_pagination(server: Server, admin: AuthClient) -> None:
    name, pw = server.new_user("pages")
    c = server.client()
    for _ in range(3):
        assert c.login(name, pw).status_code == 200
    uid = c.get("/auth/me").json()["id"]
    assert eventually(lambda: audit_types(admin, uid).count("sign_in.succeeded") == 3,
                      within=3)
    r = admin.get(f"/admin/users/{uid}/audit", params={"limit": 2})
    page = r.json()
    assert len(page["events"]) == 2 and page["next_cursor"]
    rest = admin.get(f"/admin/users/{uid}/audit",
                     params={"limit": 2, "cursor": page["next_cursor"]}).json()
    ids = [e["id"] for e in page["events"] + rest["events"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)  # newest first
    assert {"type", "at", "actor", "ip", "user_agent"} <= set(page["events"][0])
    users_cursor = admin.get("/admin/users", params={"limit": 1}).json()["next_cursor"]
    assert_error(admin.get(f"/admin/users/{uid}/audit", params={"cursor": users_cursor}),
                 400, "invalid_request")


def test_an_admin_cannot_lock_themselves_out(server: Server, admin: AuthClient) -> None:
    uid = me(admin)["id"]
    for method, path, body in (("PATCH", f"/admin/users/{uid}", {"disabled": True}),
                               ("PATCH", f"/admin/users/{uid}", {"roles": ["reports"]}),
                               ("PATCH", f"/admin/users/{uid}", {"roles": []}),
                               ("DELETE", f"/admin/users/{uid}", None)):
        assert_error(call(admin, method, path, body), 409, "self_lockout")
    assert me(admin)["roles"] == ["admin"]
    # Roles that keep the admin scope are fine.
    r = admin.unsafe("PATCH", f"/admin/users/{uid}", json={"roles": ["admin", "reports"]})
    assert r.status_code == 200, r.text
    assert admin.unsafe("PATCH", f"/admin/users/{uid}",
                        json={"roles": ["admin"]}).status_code == 200
    assert admin.get("/admin/users").status_code == 200


def test_csrf_on_every_unsafe_admin_request(server: Server, admin: AuthClient) -> None:
    victim, _ = server.new_user("csrf")
    uid = admin.get("/admin/users", params={"q": victim}).json()["users"][0]["id"]
    for method, template, body in OPERATIONS:
        if method == "GET":
            continue
        path = template.format(uid=uid, sid="s" * 32)
        r = admin.request(method, path, json=body)  # the cookie, no X-CSRF-Token
        assert_error(r, 403, "csrf")
        r = admin.request(method, path, json=body, headers={
            "X-CSRF-Token": admin.csrf or "", "Origin": "https://evil.example"})
        assert_error(r, 403, "csrf")
    shown = admin.get(f"/admin/users/{uid}").json()
    assert shown["disabled"] is False  # nothing was done


def test_a_bearer_token_with_the_scope_works_and_one_without_it_does_not(
        server: Server, admin: AuthClient) -> None:
    name, pw = server.new_user("tokadmin", roles=("admin",))
    scoped = bearer(server, name, pw)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.get("/admin/users", headers=scoped).status_code == 200
        target, _ = server.new_user("tokvictim")
        found = c.get("/admin/users", params={"q": target}, headers=scoped).json()["users"]
        r = c.patch(f"/admin/users/{found[0]['id']}", json={"disabled": True},
                    headers=scoped)  # a bearer request: no CSRF token needed
        assert r.status_code == 200 and r.json()["disabled"] is True
        narrow = bearer(server, name, pw, scope="reports")  # asked for less
        assert_error(c.get("/admin/users", headers=narrow), 403, "insufficient_scope")
        # Losing the role ends the admin token at once (roles take effect like revocations).
        assert admin.unsafe("PATCH", f"/admin/users/{me_id(c, scoped)}",
                            json={"roles": []}).status_code == 200
        assert c.get("/admin/users", headers=scoped).status_code == 401


def me_id(c: httpx.Client, headers: dict[str, str]) -> str:
    return str(c.get("/auth/me", headers=headers).json()["id"])


def test_openapi_lists_the_admin_operations(server: Server) -> None:
    spec = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    for method, template, _ in OPERATIONS:
        path = template.replace("{uid}", "{user_id}").replace("{sid}", "{entry_id}")
        op = spec["paths"][path][method.lower()]
        assert op["security"], (method, path)
        assert "admin" in op["tags"]
    body = spec["paths"]["/admin/users"]["post"]["requestBody"]["content"]
    schema = body["application/json"]["schema"]
    assert schema["required"] == ["username"]
    assert schema["additionalProperties"] is False
    names = {p["name"] for p in spec["paths"]["/admin/users"]["get"]["parameters"]}
    assert names == {"q", "cursor", "limit"}


def test_odd_entry_ids_are_not_found(server: Server, admin: AuthClient) -> None:
    """An id no row can have (a NUL: PostgreSQL refuses it in any string) is a 404, not
    a database error, on the admin's route and on the user's own."""
    name, pw = server.new_user("oddid")
    c = server.client()
    assert c.login(name, pw).status_code == 200
    uid = c.get("/auth/me").json()["id"]
    for odd in ("a%00b", "%C3%A9", "x" * 64):
        assert_error(admin.unsafe("DELETE", f"/admin/users/{uid}/sessions/{odd}"), 404)
        assert_error(c.unsafe("DELETE", f"/auth/sessions/{odd}"), 404)
    assert c.get("/auth/me").status_code == 200


def test_an_admin_makes_an_api_key_for_a_user(server: Server, admin: AuthClient) -> None:
    """Made for the user (their identity, at most their scopes), shown once, listed in the
    user's one list; revoke-all ends it; an API key, even an admin's, cannot make one."""
    name, pw = server.new_user("keyed", roles=("reports",))
    c = server.client()
    assert c.login(name, pw).status_code == 200
    uid = c.get("/auth/me").json()["id"]
    too_wide = admin.unsafe("POST", f"/admin/users/{uid}/api-keys",
                            json={"name": "wide", "scopes": ["authgate:admin"]})
    assert_error(too_wide, 403, "insufficient_scope")
    r = admin.unsafe("POST", f"/admin/users/{uid}/api-keys",
                     json={"name": "ci for keyed", "expires_in": 3600})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["key"].startswith("ag_") and made["scopes"] == ["reports"]
    key = {"Authorization": f"Bearer {made['key']}"}
    with httpx.Client(base_url=server.url, timeout=30) as m:
        seen = m.get("/auth/me", headers=key).json()
        assert seen["id"] == uid and seen["auth"] == "api_key"
        entry = next(e for e in admin.get(f"/admin/users/{uid}/sessions").json()
                     if e["kind"] == "api_key")
        assert entry["id"] == made["id"] and made["key"] not in str(entry)
        audited(admin, uid, "api_key.created")
        # An admin's own API key holds the admin scope but cannot make keys.
        admin_key = admin.unsafe("POST", "/auth/api-keys", json={"name": "admin script"})
        assert admin_key.status_code == 201, admin_key.text
        by_key = m.post(f"/admin/users/{uid}/api-keys", json={"name": "x"},
                        headers={"Authorization": f"Bearer {admin_key.json()['key']}"})
        assert_error(by_key, 403, "interactive_sign_in_required")
        assert admin.unsafe("DELETE", f"/admin/users/{uid}/sessions").status_code == 204
        assert eventually(lambda: m.get("/auth/me", headers=key).status_code == 401,
                          within=1.0)
    assert admin.get(f"/admin/users/{uid}/sessions").json() == []
