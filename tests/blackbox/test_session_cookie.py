"""Session ID and cookie (security requirements A: SESS-01..10, SESS-25; contract §3)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable

from tests.blackbox.support import (
    B64URL,
    b64url_decode,
    cookie_header,
    login_value,
    me_status,
    register,
    session_cookie_attrs,
    signed_in,
)
from tests.conftest import Server

# The contract suite: run on SQLite and on PostgreSQL + Redis (tests/conftest.py).
ALL_BACKENDS = True


def test_sess_03_06_secure_cookie_attributes(server: Server) -> None:
    username, password, _ = register(server)
    c = server.client()
    r = c.login(username, password)
    assert r.status_code == 200, r.text
    raw = [h for h in r.headers.get_list("set-cookie") if h.startswith("__Host-authgate=")]
    assert len(raw) == 1, r.headers.get_list("set-cookie")
    attrs = session_cookie_attrs(r, "__Host-authgate")
    assert "secure" in attrs
    assert "httponly" in attrs
    assert attrs.get("samesite", "").lower() == "lax"
    assert attrs.get("path") == "/"
    assert "domain" not in attrs
    # SESS-07: a non-remembered session is a browser-session cookie (or at most the
    # absolute timeout).
    if "max-age" in attrs:
        assert 0 < int(attrs["max-age"]) <= 12 * 3600
    assert "expires" not in attrs or "max-age" in attrs


def test_sess_01_value_is_long_random_and_distinct(server: Server) -> None:
    username, password, _user_id = register(server)
    values = [login_value(server, username, password) for _ in range(12)]
    assert len(set(values)) == len(values)
    for value in values:
        assert len(value) >= 43, value
        assert B64URL.match(value), value
        assert len(b64url_decode(value)) >= 32
    # No fixed prefix or suffix shared by every value.
    assert len({v[0] for v in values}) > 1 and len({v[-2] for v in values}) > 1


def test_sess_02_value_is_meaningless(server: Server) -> None:
    username, password, user_id = register(server)
    value = login_value(server, username, password)
    assert "." not in value  # not a JWT
    assert username not in value and user_id not in value
    decoded = b64url_decode(value)
    try:
        json.loads(decoded)
    except ValueError:
        pass
    else:
        raise AssertionError(f"session ID decodes to JSON: {decoded!r}")
    assert username.encode() not in decoded and user_id.encode() not in decoded


def test_sess_04_value_travels_only_in_set_cookie(server: Server) -> None:
    username, password, _ = register(server)
    c = server.client()
    r = c.login(username, password)
    value = c.session_value
    assert value
    assert value not in r.text
    for name, header in r.headers.multi_items():
        if name.lower() != "set-cookie":
            assert value not in header, name
    me = c.get("/auth/me")
    assert me.status_code == 200 and value not in me.text
    assert value not in c.get("/auth/sessions").text


def test_cookie_insecure_mode_for_plain_http(
        module_server_factory: Callable[..., Server]) -> None:
    srv = module_server_factory(cookie_secure=False)
    username, password, _ = register(srv)
    c = srv.client()
    r = c.login(username, password)
    assert r.status_code == 200, r.text
    names = [h.split("=", 1)[0] for h in r.headers.get_list("set-cookie")]
    assert "authgate" in names and "__Host-authgate" not in names, names
    attrs = session_cookie_attrs(r, "authgate")
    assert "secure" not in attrs
    assert "httponly" in attrs
    assert attrs.get("samesite", "").lower() == "lax"
    assert attrs.get("path") == "/"
    assert "domain" not in attrs
    assert len(attrs["value"]) >= 43
    assert me_status(c) == 200


def test_sess_06_unprefixed_cookie_name_is_not_a_session(server: Server) -> None:
    c, _, _ = signed_in(server)
    value = c.session_value
    assert c.get("/auth/me", headers={"Cookie": f"authgate={value}"}).status_code == 401
    assert c.get("/auth/me", headers={"Cookie": f"__Secure-authgate={value}"}).status_code == 401
    assert me_status(c) == 200


def test_sess_08_session_id_accepted_only_from_cookie(server: Server) -> None:
    c, _, _ = signed_in(server)
    value = c.session_value
    assert value
    bare = server.client()
    r = bare.get("/auth/me", headers={"Authorization": f"Bearer {value}"})
    assert r.status_code == 401
    assert r.headers.get("www-authenticate", "").startswith("Bearer")
    assert bare.get("/auth/me", params={"sid": value}).status_code == 401
    assert bare.get("/auth/me", params={"__Host-authgate": value}).status_code == 401
    assert bare.get("/auth/me", headers={"X-Session-Id": value}).status_code == 401


def test_sess_09_unknown_id_is_never_adopted(server: Server) -> None:
    c = server.client()
    chosen = secrets.token_urlsafe(32)
    r = c.get("/auth/me", headers=cookie_header(c, chosen))
    assert r.status_code == 401
    for raw in r.headers.get_list("set-cookie"):
        assert chosen not in raw


def test_sess_11_no_fixation_presented_id_not_promoted(server: Server) -> None:
    username, password, _ = register(server)
    c = server.client()
    planted = secrets.token_urlsafe(32)
    c.jar[c.session_cookie] = planted
    r = c.login(username, password)
    assert r.status_code == 200, r.text
    issued = c.session_value
    assert issued and issued != planted
    assert me_status(c, planted) == 401
    assert me_status(c, issued) == 200


def test_sess_11_new_id_on_every_login(server: Server) -> None:
    c, username, password = signed_in(server)
    first = c.session_value
    r = c.login(username, password)
    assert r.status_code == 200
    second = c.session_value
    assert first and second and first != second
    assert me_status(c, second) == 200


def test_sess_11_relogin_ends_the_session_it_replaces(server: Server) -> None:
    """ASVS 7.2.4 / SESS-11: a login from a browser that already holds a session issues a
    new ID *and terminates the current one*."""
    c, username, password = signed_in(server)
    first = c.session_value
    assert first
    assert c.login(username, password).status_code == 200
    assert c.session_value != first
    assert me_status(c, first) == 401


def test_sess_25_session_ids_and_passwords_not_logged(server: Server) -> None:
    username, password, _ = register(server)
    c = server.client()
    values = []
    for _ in range(3):
        assert c.login(username, password).status_code == 200
        assert c.session_value
        values.append(c.session_value)
        c.get("/auth/me")
        c.get("/auth/sessions")
    c.post("/auth/login", json={"username": username, "password": password + "x"})
    c.get("/auth/me", headers=cookie_header(c, values[0] + "'\"; DROP"))
    assert c.unsafe("POST", "/auth/logout").status_code == 204
    log = server.log()
    assert log  # the server writes a log at all
    for value in values:
        assert value not in log
    assert password not in log
