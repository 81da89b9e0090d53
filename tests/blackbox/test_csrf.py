"""CSRF and cross-origin protection of cookie-authenticated requests (contract §3;
requirements C: CSRF-01..08)."""

from __future__ import annotations

import pytest

from tests.blackbox.conftest import TUNED
from tests.blackbox.support import (
    EVIL,
    assert_error,
    me_status,
    new_password,
    register,
    signed_in,
)
from tests.conftest import Server
from tests.helpers import AuthClient

# The contract suite: run on SQLite and on PostgreSQL + Redis (tests/conftest.py).
ALL_BACKENDS = True
ENCRYPTED_BACKEND = True  # bearer flows once more with TOKEN_ENCRYPTION=true (tests/conftest.py)


def refused(r_status: int, body: dict[str, object]) -> bool:
    return r_status == 403 and body.get("error") == "csrf"


def logout(client: AuthClient, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    r = client.post("/auth/logout", headers=headers)
    return r.status_code, (r.json() if r.content else {})


def test_csrf_01_missing_token_refused(server: Server) -> None:
    c, _, _ = signed_in(server)
    r = c.post("/auth/logout", headers={"Origin": c.origin})
    assert_error(r, 403, "csrf")
    assert me_status(c) == 200  # no state change


def test_csrf_01_missing_token_refused_on_every_unsafe_route(server: Server) -> None:
    c, username, password = signed_in(server)
    other, _, _ = signed_in(server, username, password)
    other_id = next(e for e in other.get("/auth/sessions").json() if e["current"])["id"]
    h = {"Origin": c.origin}
    assert_error(c.post("/auth/logout", headers=h), 403, "csrf")
    assert_error(c.delete("/auth/sessions", headers=h), 403, "csrf")
    assert_error(c.delete(f"/auth/sessions/{other_id}", headers=h), 403, "csrf")
    assert_error(c.post("/auth/password", headers=h, json={
        "current_password": password, "new_password": new_password()}), 403, "csrf")
    assert me_status(c) == 200 and me_status(other) == 200
    assert server.client().login(username, password).status_code == 200


def test_csrf_02_wrong_token_refused(server: Server) -> None:
    c, _, _ = signed_in(server)
    assert c.csrf
    for wrong in ("x", c.csrf[:-1], c.csrf + "A", c.csrf.upper(), c.csrf + "="):
        r = c.unsafe("POST", "/auth/logout", headers={"X-CSRF-Token": wrong})
        assert_error(r, 403, "csrf")
    assert me_status(c) == 200


def test_csrf_02_token_of_another_users_session_refused(server: Server) -> None:
    victim, _, _ = signed_in(server)
    attacker, _, _ = signed_in(server)
    r = victim.unsafe("POST", "/auth/logout", headers={"X-CSRF-Token": attacker.csrf or ""})
    assert_error(r, 403, "csrf")
    assert me_status(victim) == 200


def test_csrf_02_token_of_a_previous_session_refused(server: Server) -> None:
    c, username, password = signed_in(server)
    old_token = c.csrf
    assert c.login(username, password).status_code == 200
    assert c.csrf != old_token
    r = c.unsafe("POST", "/auth/logout", headers={"X-CSRF-Token": old_token or ""})
    assert_error(r, 403, "csrf")
    assert me_status(c) == 200


def test_csrf_03_naive_double_submit_refused(server: Server) -> None:
    c, _, _ = signed_in(server)
    cookies = "; ".join(f"{k}={v}" for k, v in c.jar.items())
    for name in ("csrf", "csrf_token", "X-CSRF-Token", "__Host-csrf"):
        r = c.post("/auth/logout", headers={
            "Cookie": f"{cookies}; {name}=AAAA", "X-CSRF-Token": "AAAA", "Origin": c.origin})
        assert_error(r, 403, "csrf")
    assert me_status(c) == 200


def test_csrf_token_from_login_and_me_agree(server: Server) -> None:
    c, _, _ = signed_in(server)
    me = c.get("/auth/me").json()
    assert me["csrf_token"] == c.csrf
    assert isinstance(c.csrf, str) and len(c.csrf) >= 22
    assert c.csrf != c.session_value


@pytest.mark.parametrize("origin", [
    EVIL,
    "null",
    "http://evil.example",
    "http://127.0.0.1",
    "https://127.0.0.1:{port}",
    "http://127.0.0.1:{port}.evil.example",
    "http://127.0.0.1:{port}@evil.example",
    "http://127.0.0.1:1{port}",
    "http://127.0.0.1:{port} http://127.0.0.1:{port}",
    "",
])
def test_csrf_06_origin_exact(server: Server, shared_client: AuthClient, origin: str) -> None:
    c = shared_client
    r = c.unsafe("POST", "/auth/logout", headers={"Origin": origin.format(port=server.port)})
    assert_error(r, 403, "csrf")
    assert me_status(c) == 200


def test_csrf_01_sec_fetch_site_cross_site_refused(server: Server) -> None:
    c, _, _ = signed_in(server)
    r = c.unsafe("POST", "/auth/logout", headers={"Sec-Fetch-Site": "cross-site"})
    assert_error(r, 403, "csrf")
    assert me_status(c) == 200


def test_csrf_01_correct_request_passes(server: Server) -> None:
    c, _, _ = signed_in(server)
    r = c.unsafe("POST", "/auth/logout", headers={"Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 204
    assert me_status(c) == 401


def test_csrf_absent_origin_with_valid_token_passes(server: Server) -> None:
    """Contract §3: Origin is checked *when sent*; the token is what always counts."""
    c, _, _ = signed_in(server)
    r = c.post("/auth/logout", headers={"X-CSRF-Token": c.csrf or ""})
    assert r.status_code == 204


def test_csrf_bearer_requests_are_exempt(server: Server) -> None:
    username, password, _ = register(server)
    tok = server.client().token(username, password).json()
    r = server.client().post("/auth/logout", headers={
        "Authorization": f"Bearer {tok['access_token']}", "Origin": EVIL})
    assert r.status_code == 204, r.text
    r = server.client().get("/auth/me",
                            headers={"Authorization": f"Bearer {tok['access_token']}"})
    assert r.status_code == 401


def test_csrf_bearer_with_cookie_is_the_bearer_request(server: Server) -> None:
    """Bearer + cookie: the bearer authenticates (no CSRF needed) and the cookie's session
    is untouched."""
    c, _, _ = signed_in(server)
    value = c.session_value
    username, password, _ = register(server)
    token = server.client().token(username, password).json()["access_token"]
    r = c.post("/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 204, r.text
    assert me_status(c, value) == 200
    bearer = {"Authorization": f"Bearer {token}"}
    assert server.client().get("/auth/me", headers=bearer).status_code == 401


@pytest.mark.parametrize("headers", [
    {"Origin": EVIL},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": "http://127.0.0.1:{port}.evil.example"},
])
def test_csrf_07_cross_site_login_refused(server: Server, account: tuple[str, str],
                                          headers: dict[str, str]) -> None:
    username, password = account
    c = server.client()
    sent = {k: v.format(port=server.port) for k, v in headers.items()}
    r = c.post("/auth/login", json={"username": username, "password": password},
               headers=sent)
    assert_error(r, 403, "csrf")
    assert not r.headers.get_list("set-cookie")
    assert "csrf_token" not in r.text


def test_csrf_07_same_origin_login_allowed(server: Server) -> None:
    username, password, _ = register(server)
    c = server.client()
    r = c.login(username, password, headers={"Origin": c.origin,
                                             "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 200


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/auth/logout"),
    ("HEAD", "/auth/logout"),
    ("GET", "/auth/password"),
    ("GET", "/auth/login"),
    ("GET", "/auth/register"),
    ("PUT", "/auth/sessions"),
])
def test_csrf_04_no_state_change_on_wrong_method(shared_client: AuthClient, method: str,
                                                 path: str) -> None:
    c = shared_client
    r = c.request(method, path)
    assert r.status_code == 405
    assert not r.headers.get_list("set-cookie")
    assert me_status(c) == 200


def test_authn_09_credentials_in_query_string_refused(server: Server) -> None:
    username, password, _ = register(server)
    c = server.client()
    r = c.get("/auth/login", params={"username": username, "password": password})
    assert r.status_code == 405
    r = c.post("/auth/login", params={"username": username, "password": password},
               json={})
    assert r.status_code == 400
    assert not c.jar


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x"])
def test_csrf_05_simple_content_types_refused(server: Server, shared_client: AuthClient,
                                              account: tuple[str, str], ctype: str) -> None:
    c = shared_client
    username, password = account
    body = f'{{"current_password": "{password}", "new_password": "{new_password()}"}}'
    r = c.unsafe("POST", "/auth/password", content=body, headers={"Content-Type": ctype})
    assert r.status_code in (403, 415), r.text
    assert_error(r, r.status_code)
    login = server.client().post("/auth/login", headers={"Content-Type": ctype},
                                 content=f'{{"username": "{username}", '
                                         f'"password": "{password}"}}')
    assert login.status_code in (403, 415)
    assert not login.headers.get_list("set-cookie")
    assert server.client().login(username, password).status_code == 200


def test_csrf_08_no_cors_for_foreign_origins(server: Server) -> None:
    c, _, _ = signed_in(server)
    pre = c.options("/auth/me", headers={"Origin": EVIL,
                                         "Access-Control-Request-Method": "GET"})
    r = c.get("/auth/me", headers={"Origin": EVIL})
    for resp in (pre, r):
        acao = resp.headers.get("access-control-allow-origin")
        assert acao not in (EVIL, "*", "null")
        assert acao is None or resp.headers.get("access-control-allow-credentials") != "true"


@pytest.fixture(scope="module")
def with_allowed(tuned: Server) -> tuple[Server, str, str]:
    """ALLOWED_ORIGINS=https://app.example.test,https://admin.example.test:8443"""
    assert "https://app.example.test" in TUNED["allowed_origins"]  # type: ignore[operator]
    username, password, _ = register(tuned)
    return tuned, username, password


@pytest.mark.parametrize(("origin", "ok"), [
    ("https://app.example.test", True),
    ("https://admin.example.test:8443", True),
    ("{public}", True),
    ("https://app.example.test.evil.example", False),
    ("http://app.example.test", False),
    ("https://admin.example.test", False),
    ("https://evil.app.example.test", False),
])
def test_csrf_06_allowed_origins_exact(with_allowed: tuple[Server, str, str], origin: str,
                                      ok: bool) -> None:
    srv, username, password = with_allowed
    c, _, _ = signed_in(srv, username, password)
    r = c.unsafe("POST", "/auth/logout", headers={"Origin": origin.format(public=srv.url)})
    if ok:
        assert r.status_code == 204, r.text
    else:
        assert_error(r, 403, "csrf")
        assert me_status(c) == 200
