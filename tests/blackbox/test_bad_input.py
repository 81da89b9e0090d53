"""Hostile and malformed input, and the plain API surface (contract §2: error bodies,
401 + WWW-Authenticate, 413/415, ops endpoints; SESS-10, SESS-22, AUTHN-08)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.blackbox.support import assert_error, new_name, register, signed_in
from tests.conftest import Server
from tests.helpers import AuthClient


def raw(server: Server, path: str, *, method: str = "POST", body: bytes = b"",
        ctype: str | None = "application/json",
        headers: dict[str, str] | None = None) -> httpx.Response:
    h = {"Content-Type": ctype} if ctype else {}
    with httpx.Client(base_url=server.url, timeout=30) as c:
        return c.request(method, path, content=body, headers={**h, **(headers or {})})


@pytest.mark.parametrize("path", ["/auth/register", "/auth/login"])
@pytest.mark.parametrize("body", [b"{", b"{'username': 'x'}", b'{"username": "x",}',
                                  b"\xff\xfe{}", b'{"a": 1} trailing', b'"\\ud800"'])
def test_malformed_json_is_400(server: Server, path: str, body: bytes) -> None:
    assert_error(raw(server, path, body=body), 400)


@pytest.mark.parametrize("path", ["/auth/register", "/auth/login"])
@pytest.mark.parametrize("body", [b"[]", b'["username", "password"]', b'"text"', b"42",
                                  b"null", b"true", b""])
def test_non_object_json_is_400(server: Server, path: str, body: bytes) -> None:
    assert_error(raw(server, path, body=body), 400)


@pytest.mark.parametrize(("path", "body"), [
    ("/auth/register", {"username": "u-extra", "password": "x" * 20, "roles": ["admin"]}),
    ("/auth/register", {"username": "u-extra2", "password": "x" * 20, "is_admin": True}),
    ("/auth/login", {"username": "u", "password": "p" * 12, "admin": True}),
    ("/auth/login", {"username": "u", "password": "p" * 12, "remember": True, "ttl": 9e9}),
])
def test_unknown_field_is_400(server: Server, path: str, body: dict[str, object]) -> None:
    with httpx.Client(base_url=server.url) as c:
        r = c.post(path, json=body)
    assert_error(r, 400)
    assert not r.headers.get_list("set-cookie")


def test_unknown_field_cannot_grant_roles(server: Server) -> None:
    name = new_name("role")
    with httpx.Client(base_url=server.url) as c:
        c.post("/auth/register", json={"username": name, "password": "a fine long secret",
                                       "roles": ["admin"]})
        assert c.post("/auth/login", json={"username": name, "password":
                                           "a fine long secret"}).status_code == 401


@pytest.mark.parametrize("body", [{"username": "only-name"}, {"password": "x" * 20}, {}])
def test_missing_field_is_400(server: Server, body: dict[str, str]) -> None:
    for path in ("/auth/register", "/auth/login"):
        with httpx.Client(base_url=server.url) as c:
            assert_error(c.post(path, json=body), 400)


def test_remember_must_be_boolean(server: Server) -> None:
    username, password, _ = register(server)
    for value in ("yes", 1, "true", None):
        with httpx.Client(base_url=server.url) as c:
            r = c.post("/auth/login", json={"username": username, "password": password,
                                            "remember": value})
        assert_error(r, 400)
        assert not r.headers.get_list("set-cookie")


@pytest.mark.parametrize("path", ["/auth/register", "/auth/login", "/auth/token"])
def test_body_over_64_kib_is_413(server: Server, path: str) -> None:
    big = b'{"username": "x", "password": "' + b"a" * (64 * 1024) + b'"}'
    r = raw(server, path, body=big)
    if path == "/auth/token":  # an OAuth endpoint: RFC 6749 §5.2's body and code
        assert r.status_code == 413
        assert set(r.json()) == {"error", "error_description"}
        assert r.json()["error"] == "invalid_request"
    else:
        assert_error(r, 413)


def test_chunked_body_over_64_kib_is_413(server: Server) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"username": "x", "password": "'
        for _ in range(20):
            yield b"a" * 8192
        yield b'"}'

    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.post("/auth/login", content=chunks(), headers={"Content-Type": "application/json"})
    assert_error(r, 413)


def test_body_just_under_64_kib_is_not_413(server: Server) -> None:
    filler = "a" * (64 * 1024 - 100)
    r = raw(server, "/auth/login",
            body=f'{{"username": "x", "password": "{filler}"}}'.encode())
    assert r.status_code == 401


@pytest.mark.parametrize("ctype", ["text/plain", None, "application/xml",
                                   "application/x-www-form-urlencoded", "multipart/form-data",
                                   "text/json"])
@pytest.mark.parametrize("path", ["/auth/register", "/auth/login"])
def test_wrong_content_type_is_415(server: Server, path: str, ctype: str | None) -> None:
    r = raw(server, path, body=b'{"username": "x", "password": "yyyyyyyyyyyyyyyy"}',
            ctype=ctype)
    assert_error(r, 415)
    assert not r.headers.get_list("set-cookie")


GARBAGE = [
    "A" * 8192,
    '"quoted-value"',
    "'single'",
    "a;b;c",
    "../../../../etc/passwd",
    "%00%ff%2e%2e",
    "{\"json\": true}",
    "' OR '1'='1",
    "=",
    "===",
    "a=b=c",
    "~!@#$%^&*()[]{}<>|\\`",
    "é-not-ascii",
    "a b  c",
    "${jndi:ldap://x}",
]


@pytest.mark.parametrize("value", GARBAGE, ids=range(len(GARBAGE)))
def test_sess_10_garbage_session_cookie_is_401(server: Server, value: str) -> None:
    header = f"__Host-authgate={value}".encode()
    for method, path in (("GET", "/auth/me"), ("GET", "/auth/sessions"),
                         ("POST", "/auth/logout"), ("DELETE", "/auth/sessions")):
        with httpx.Client(base_url=server.url, timeout=30) as c:
            r = c.request(method, path, headers=[(b"Cookie", header)])
        assert_error(r, 401)
        assert r.headers.get("www-authenticate", "").startswith("Bearer")


def test_sess_10_non_utf8_cookie_bytes_are_401(server: Server) -> None:
    for junk in (b"\xff\xfe\xfd", b"\xc3\x28", b"\x80abc", b"\xed\xa0\x80"):
        with httpx.Client(base_url=server.url, timeout=30) as c:
            r = c.get("/auth/me", headers=[(b"Cookie", b"__Host-authgate=" + junk)])
        assert_error(r, 401)


def test_sess_10_oversized_cookie_header_is_refused_not_500(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.get("/auth/me", headers={"Cookie": "__Host-authgate=" + "B" * 60_000})
    assert r.status_code in (400, 401, 431), r.status_code


def test_sess_10_garbage_cookie_does_not_break_login(server: Server) -> None:
    username, password, _ = register(server)
    c = server.client()
    c.jar["__Host-authgate"] = "%%%garbage;;"
    c.jar["other"] = "x" * 3000
    assert c.login(username, password).status_code == 200


@pytest.mark.parametrize("authorization", [
    "Bearer", "Bearer  x", "Bearer a.b.c", "Bearer " + "x" * 8000, "Bearer ..",
    "Basic Zm9vOmJhcg==",
    "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "bearer \u00e9t\u00e9",
])
def test_garbage_authorization_is_401(server: Server, authorization: str) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.get("/auth/me", headers=[(b"Authorization", authorization.encode())])
    assert_error(r, 401)
    assert r.headers.get("www-authenticate", "").startswith("Bearer")


def test_invalid_bearer_401_says_invalid_token(server: Server) -> None:
    with httpx.Client(base_url=server.url) as c:
        r = c.get("/auth/me", headers={"Authorization": "Bearer not-a-token"})
    assert_error(r, 401)
    assert 'error="invalid_token"' in r.headers.get("www-authenticate", "")


@pytest.mark.parametrize("entry", ["..%2F..%2Fetc", "x" * 1000, "%00", "' OR 1=1 --",
                                   "%E2%80%AE"])
def test_weird_session_ids_in_path_are_404(shared_client: AuthClient, entry: str) -> None:
    r = shared_client.unsafe("DELETE", f"/auth/sessions/{entry}")
    assert_error(r, 404)
    assert shared_client.get("/auth/me").status_code == 200


@pytest.mark.parametrize("username", ["", "   ", "a\x00b", "tab\there", "\u202eevil",
                                      "x" * 151, "line\nbreak"])
def test_bad_usernames_are_refused_at_register(server: Server, username: str) -> None:
    with httpx.Client(base_url=server.url) as c:
        r = c.post("/auth/register", json={"username": username,
                                           "password": "a perfectly fine passphrase"})
    assert 400 <= r.status_code < 500 and r.status_code != 409, r.text
    assert_error(r, r.status_code)


# -- the plain API surface ------------------------------------------------------------------


def test_healthz(server: Server) -> None:
    r = httpx.get(f"{server.url}/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_metrics_prometheus_text(server: Server) -> None:
    r = httpx.get(f"{server.url}/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "# TYPE" in r.text


def test_openapi_and_docs(server: Server) -> None:
    r = httpx.get(f"{server.url}/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for path in ("/auth/login", "/auth/logout", "/auth/me", "/auth/sessions",
                 "/auth/register", "/auth/password", "/auth/token"):
        assert path in paths, path
    assert httpx.get(f"{server.url}/docs").status_code == 200


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/auth/me"), ("GET", "/auth/sessions"), ("DELETE", "/auth/sessions"),
    ("DELETE", "/auth/sessions/abc"), ("POST", "/auth/logout"), ("POST", "/auth/password"),
])
def test_unauthenticated_is_401_with_www_authenticate(server: Server, method: str,
                                                      path: str) -> None:
    with httpx.Client(base_url=server.url) as c:
        r = c.request(method, path, json={"current_password": "a" * 12,
                                          "new_password": "b" * 16}
                      if path == "/auth/password" else None)
    assert_error(r, 401)
    assert r.headers.get("www-authenticate", "").startswith("Bearer")


def test_failed_login_401_carries_www_authenticate(server: Server) -> None:
    """Contract §2: "A 401 carries WWW-Authenticate: Bearer" (and RFC 9110 §15.5.2)."""
    with httpx.Client(base_url=server.url) as c:
        r = c.post("/auth/login", json={"username": new_name(), "password": "x" * 14})
    assert_error(r, 401, "invalid_credentials")
    assert r.headers.get("www-authenticate", "").startswith("Bearer")


def test_error_bodies_for_404_and_405(server: Server) -> None:
    assert_error(httpx.get(f"{server.url}/auth/nope"), 404)
    assert_error(httpx.get(f"{server.url}/auth/logout"), 405)
    assert_error(httpx.delete(f"{server.url}/auth/login"), 405)


def test_sess_22_no_store_on_credential_responses(server: Server) -> None:
    username, password, _ = register(server)
    c = server.client()
    login = c.login(username, password)
    assert "no-store" in login.headers.get("cache-control", "")
    me = c.get("/auth/me")
    assert "no-store" in me.headers.get("cache-control", "")
    failed = c.post("/auth/login", json={"username": username, "password": "n" * 13})
    assert "no-store" in failed.headers.get("cache-control", "")
    assert "no-store" in c.get("/auth/sessions").headers.get("cache-control", "")


def test_login_response_shape(server: Server, account: tuple[str, str]) -> None:
    with httpx.Client(base_url=server.url) as c:
        r = c.post("/auth/login", json={"username": account[0], "password": account[1]})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"user", "csrf_token"}
    assert body["user"]["username"] == account[0]
    assert {"id", "username", "roles"} <= set(body["user"])
    assert not {"password", "password_hash", "hash"} & set(body["user"])
    assert isinstance(body["csrf_token"], str) and len(body["csrf_token"]) >= 22


def test_me_shape_for_a_session(server: Server) -> None:
    c, username, _ = signed_in(server)
    r = c.get("/auth/me")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"id", "username", "roles", "scopes", "auth", "csrf_token", "amr",
                         "auth_time", "email", "email_verified"}  # contract §7, §8
    assert body["username"] == username and body["auth"] == "session"
    assert body["amr"] == ["pwd"] and isinstance(body["auth_time"], int)
    assert body["roles"] == [] and body["scopes"] == []


def test_nosniff_on_responses(server: Server) -> None:
    for path in ("/healthz", "/auth/me", "/openapi.json"):
        assert httpx.get(f"{server.url}{path}").headers.get(
            "x-content-type-options") == "nosniff"


@pytest.mark.parametrize(("username", "password"), [
    ("admin", "admin"), ("admin", "password"), ("root", "root"), ("test", "test"),
    ("admin", "admin123456789"), ("authgate", "authgate"),
])
def test_authn_08_no_default_accounts(server: Server, username: str, password: str) -> None:
    with httpx.Client(base_url=server.url) as c:
        r = c.post("/auth/login", json={"username": username, "password": password})
    assert_error(r, 401, "invalid_credentials")


def test_malformed_http_does_not_crash_the_server(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}")
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 4"), reply[:80]
    assert httpx.get(f"{server.url}/healthz").status_code == 200
