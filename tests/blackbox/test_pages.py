"""The HTML pages (contract §5): /login protected against login CSRF with a safe ``next``,
/account listing sessions with revoke and log-out forms."""

from __future__ import annotations

import html
import re

import httpx
import pytest

from tests.blackbox.support import (
    EVIL,
    me_status,
    register,
    session_cookie_attrs,
    signed_in,
)
from tests.conftest import Server
from tests.helpers import AuthClient

FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def login_form(c: AuthClient, query: str = "") -> str:
    r = c.get(f"/login{query}")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    m = FORM_TOKEN.search(r.text)
    assert m, r.text
    return html.unescape(m.group(1))


def page_login(c: AuthClient, username: str, password: str, *, next_: str | None = None,
               headers: dict[str, str] | None = None) -> httpx.Response:
    token = login_form(c)
    data = {"form_token": token, "username": username, "password": password}
    if next_ is not None:
        data["next"] = next_
    return c.post("/login", data=data, headers={"Origin": c.origin, **(headers or {})})


def test_login_page_is_a_protected_form(server: Server) -> None:
    c = server.client()
    r = c.get("/login")
    assert r.status_code == 200
    for field in ('name="username"', 'name="password"', 'name="remember"',
                  'name="form_token"', 'method="post"'):
        assert field in r.text, field
    assert "no-store" in r.headers.get("cache-control", "")
    assert "frame-ancestors 'none'" in r.headers.get("content-security-policy", "")
    nonce = session_cookie_attrs(r, "__Host-authgate-login")
    assert {"secure", "httponly"} <= set(nonce) and nonce.get("path") == "/"
    assert "domain" not in nonce
    assert nonce["value"] not in r.text  # the form carries a MAC of it, not the nonce


def test_page_login_success_redirects_to_account(server: Server) -> None:
    username, password, _ = register(server)
    c = server.client()
    r = page_login(c, username, password)
    assert r.status_code == 303
    assert r.headers["location"] == "/account"
    attrs = session_cookie_attrs(r, "__Host-authgate")
    assert {"secure", "httponly"} <= set(attrs)
    assert attrs.get("samesite", "").lower() == "lax" and "domain" not in attrs
    assert me_status(c) == 200
    page = c.get("/account")
    assert page.status_code == 200 and username in page.text


def test_page_login_wrong_password_is_generic(server: Server) -> None:
    username, _, _ = register(server)
    c = server.client()
    wrong = page_login(c, username, "wrong password here")
    ghost = page_login(c, "no-such-user-here", "wrong password here")
    assert wrong.status_code == ghost.status_code == 401
    assert "__Host-authgate=" not in " ".join(wrong.headers.get_list("set-cookie"))
    assert "Invalid username or password" in wrong.text
    assert "Invalid username or password" in ghost.text


@pytest.mark.parametrize("case", ["no-nonce-cookie", "no-form-token", "forged-token",
                                  "foreign-origin", "null-origin", "cross-site"])
def test_csrf_07_page_login_csrf(server: Server, account: tuple[str, str], case: str) -> None:
    username, password = account
    c = server.client()
    token = login_form(c)
    data = {"form_token": token, "username": username, "password": password}
    headers = {"Origin": c.origin}
    if case == "no-nonce-cookie":
        c.jar.clear()
    elif case == "no-form-token":
        del data["form_token"]
    elif case == "forged-token":
        data["form_token"] = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    elif case == "foreign-origin":
        headers["Origin"] = EVIL
    elif case == "null-origin":
        headers["Origin"] = "null"
    else:
        headers["Sec-Fetch-Site"] = "cross-site"
    r = c.post("/login", data=data, headers=headers)
    assert r.status_code == 403
    assert "__Host-authgate=" not in " ".join(r.headers.get_list("set-cookie"))
    assert me_status(c) == 401


def test_csrf_07_form_token_is_bound_to_its_nonce(server: Server) -> None:
    """The attacker's own (nonce, token) pair cannot be replayed with the victim's nonce."""
    username, password, _ = register(server)
    attacker = server.client()
    attacker_token = login_form(attacker)
    victim = server.client()
    login_form(victim)  # the victim has their own nonce cookie
    r = victim.post("/login", data={"form_token": attacker_token, "username": username,
                                    "password": password}, headers={"Origin": victim.origin})
    assert r.status_code == 403


@pytest.mark.parametrize(("next_", "expected"), [
    ("https://evil.example/x", "/account"),
    ("//evil.example/x", "/account"),
    ("/\\evil.example", "/account"),
    ("\\\\evil.example", "/account"),
    ("javascript:alert(1)", "/account"),
    ("http:/evil.example", "/account"),
    ("/\t/evil.example", "/account"),
    ("", "/account"),
    ("/account?tab=sessions", "/account?tab=sessions"),
    ("/docs", "/docs"),
])
def test_page_login_next_is_local_only(server: Server, account: tuple[str, str], next_: str,
                                       expected: str) -> None:
    username, password = account
    r = page_login(server.client(), username, password, next_=next_)
    assert r.status_code == 303
    assert r.headers["location"] == expected


def test_login_page_escapes_next(server: Server) -> None:
    r = server.client().get("/login", params={"next": '/x"><script>alert(1)</script>'})
    assert r.status_code == 200
    assert "<script>alert(1)</script>" not in r.text


def test_account_redirects_to_login_when_signed_out(server: Server) -> None:
    r = server.client().get("/account")
    assert r.status_code in (302, 303)
    assert r.headers["location"].startswith("/login")
    assert "next=%2Faccount" in r.headers["location"]


def test_account_lists_sessions_and_escapes_what_users_control(server: Server) -> None:
    username, password, _ = register(server, username="<b>bb</b>-" + register(server)[0])
    xss_agent = '<img src=x onerror="alert(1)">'
    other = server.client(headers={"User-Agent": xss_agent})
    assert other.login(username, password).status_code == 200
    c, _, _ = signed_in(server, username, password)
    page = c.get("/account")
    assert page.status_code == 200
    assert "<b>bb</b>" not in page.text and "&lt;b&gt;bb&lt;/b&gt;" in page.text
    assert xss_agent not in page.text and "&lt;img src=x onerror=" in page.text
    ids = [e["id"] for e in c.get("/auth/sessions").json()]
    for entry_id in ids:
        assert entry_id in page.text
    assert c.session_value and c.session_value not in page.text
    assert other.session_value and other.session_value not in page.text


def test_account_forms_need_the_csrf_token(server: Server) -> None:
    c, _, _ = signed_in(server)
    r = c.post("/account/logout", data={}, headers={"Origin": c.origin})
    assert r.status_code == 403
    r = c.post("/account/logout", data={"csrf_token": "forged"}, headers={"Origin": c.origin})
    assert r.status_code == 403
    token = CSRF_FIELD.search(c.get("/account").text)
    assert token
    r = c.post("/account/logout", data={"csrf_token": html.unescape(token.group(1))},
               headers={"Origin": EVIL})
    assert r.status_code == 403
    assert me_status(c) == 200


def test_account_logout_and_revoke_forms(server: Server) -> None:
    c, username, password = signed_in(server)
    other, _, _ = signed_in(server, username, password)
    other_id = next(e for e in other.get("/auth/sessions").json() if e["current"])["id"]
    token = CSRF_FIELD.search(c.get("/account").text)
    assert token
    csrf = html.unescape(token.group(1))
    r = c.post("/account/revoke", data={"csrf_token": csrf, "id": other_id},
               headers={"Origin": c.origin})
    assert r.status_code == 303
    assert me_status(other) == 401 and me_status(c) == 200
    old = c.session_value
    r = c.post("/account/logout", data={"csrf_token": csrf}, headers={"Origin": c.origin})
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert session_cookie_attrs(r, "__Host-authgate")["value"] == ""
    assert me_status(c, old) == 401


def test_account_logout_everywhere_form(server: Server) -> None:
    c, username, password = signed_in(server)
    other, _, _ = signed_in(server, username, password)
    token = CSRF_FIELD.search(c.get("/account").text)
    assert token
    r = c.post("/account/logout-all", data={"csrf_token": html.unescape(token.group(1))},
               headers={"Origin": c.origin})
    assert r.status_code == 303
    assert me_status(other) == 401 and me_status(c) == 401


def test_page_login_remember_me(server: Server, account: tuple[str, str]) -> None:
    c = server.client()
    token = login_form(c)
    r = c.post("/login", data={"form_token": token, "username": account[0],
                               "password": account[1], "remember": "on"},
               headers={"Origin": c.origin})
    assert r.status_code == 303
    assert session_cookie_attrs(r, "__Host-authgate").get("max-age") == str(30 * 24 * 3600)


def test_page_login_shares_the_account_throttle(server: Server) -> None:
    username, password, _ = register(server)
    api = server.client()
    for i in range(11):
        r = api.post("/auth/login", json={"username": username, "password": f"bad {i} guess"})
        if r.status_code == 429:
            break
    assert r.status_code == 429
    page = page_login(server.client(), username, password)
    assert page.status_code == 429
    assert "__Host-authgate=" not in " ".join(page.headers.get_list("set-cookie"))
