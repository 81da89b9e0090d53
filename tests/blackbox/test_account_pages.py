"""The lifecycle's pages (contract §7), over HTTP as a browser without JavaScript sends
them: /register, /forgot-password, /reset-password and /verify-email (the token leaves the
address bar before anything loads), the links on /login, the address on /account."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.blackbox.support import EVIL, new_password, session_cookie_attrs
from tests.blackbox.test_pages import page_login
from tests.conftest import Server, backend_server
from tests.helpers import AuthClient
from tests.mailbox import Mailbox

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           mailbox: Mailbox) -> Iterator[Server]:
    with backend_server(request, tmp_path_factory, "sqlite", smtp_url=mailbox.url) as srv:
        yield srv


def address() -> str:
    return f"p{uuid.uuid4().hex[:10]}@example.com"


def page_register(c: AuthClient, email: str = "") -> tuple[str, str, httpx.Response]:
    name, password = f"p-{uuid.uuid4().hex[:10]}", new_password()
    r = c.post("/register", data={"username": name, "password": password, "email": email},
               headers={"Origin": c.origin})
    return name, password, r


def open_link(c: AuthClient, link: str, page: str) -> None:
    """What a browser does with the mail's link: the token goes into a cookie at once."""
    r = c.get(link.removeprefix(c.origin))
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"/{page}"  # the address bar loses the token
    assert r.headers["referrer-policy"] == "no-referrer"
    attrs = session_cookie_attrs(r, f"__Host-authgate-{page.split('-')[0]}")
    assert {"httponly", "secure"} <= set(attrs) and attrs["samesite"].lower() == "lax"


def test_login_links_to_register_and_forgot(server: Server, make_server: Any) -> None:
    with server.client() as c:
        text = c.get("/login").text
    assert 'href="/forgot-password"' in text and 'href="/register"' in text
    closed = make_server(open_registration=False)
    with closed.client() as c:
        assert 'href="/register"' not in c.get("/login").text
        assert c.get("/register").status_code == 404
        assert c.get("/forgot-password").status_code == 200


def test_register_then_verify_by_the_link(server: Server, mailbox: Mailbox) -> None:
    email = address()
    c = server.client()
    r = c.get("/register")
    assert r.status_code == 200 and 'name="email"' in r.text
    assert "script-src" not in r.headers["content-security-policy"]
    assert "default-src 'none'" in r.headers["content-security-policy"]
    _, password, r = page_register(c, email)
    assert r.status_code == 303 and r.headers["location"] == "/login?done=registered-mail"
    assert "confirm your address" in c.get(r.headers["location"]).text
    link = mailbox.wait(email)[0].link("verify-email")
    open_link(c, link, "verify-email")
    r = c.get("/verify-email")
    assert r.status_code == 200 and 'action="/verify-email"' in r.text
    assert r.headers["referrer-policy"] == "no-referrer"
    assert link.split("token=")[1] not in r.text
    r = c.post("/verify-email", headers={"Origin": c.origin})
    assert r.status_code == 200 and "verified address" in r.text, r.text
    assert c.jar.get("__Host-authgate-verify") is None  # spent, cleared
    with server.client() as other:
        assert other.login(email, password).json()["user"]["email_verified"] is True
    # The same link again: refused.
    open_link(c, link, "verify-email")
    assert c.post("/verify-email", headers={"Origin": c.origin}).status_code == 400


def test_register_page_errors_and_cross_site(server: Server) -> None:
    c = server.client()
    _, _, r = page_register(c, "not an address")
    assert r.status_code == 422 and "not a valid email address" in r.text
    r = c.post("/register", data={"username": "x", "password": new_password()},
               headers={"Origin": EVIL})
    assert r.status_code == 403


def test_forgot_then_reset_by_the_link(server: Server, mailbox: Mailbox) -> None:
    email = address()
    c = server.client()
    name, password, _ = page_register(c, email)
    mailbox.wait(email)
    with server.client() as api:
        assert api.login(name, password).status_code == 200
    assert 'name="email"' in c.get("/forgot-password").text
    known = c.post("/forgot-password", data={"email": email}, headers={"Origin": c.origin})
    unknown = c.post("/forgot-password", data={"email": address()},
                     headers={"Origin": c.origin})
    assert known.status_code == unknown.status_code == 200
    assert known.text == unknown.text and 'id="sent"' in known.text
    link = mailbox.wait(email, 2)[1].link("reset-password")
    open_link(c, link, "reset-password")
    r = c.get("/reset-password")
    assert r.status_code == 200 and 'name="new_password"' in r.text
    assert r.headers["referrer-policy"] == "no-referrer"
    r = c.post("/reset-password", data={"new_password": "short"}, headers={"Origin": c.origin})
    assert r.status_code == 422 and 'name="new_password"' in r.text  # the policy; token kept
    assert c.post("/reset-password", data={"new_password": new_password()},
                  headers={"Origin": EVIL}).status_code == 403
    new = new_password()
    r = c.post("/reset-password", data={"new_password": new}, headers={"Origin": c.origin})
    assert r.status_code == 303 and r.headers["location"] == "/login?done=reset", r.text
    assert c.jar.get("__Host-authgate-reset") is None
    r = page_login(c, email, new)
    assert r.status_code == 303 and r.headers["location"] == "/account"
    with server.client() as api:
        assert api.login(name, password).status_code == 401


def test_reset_page_without_a_token(server: Server) -> None:
    with server.client() as c:
        r = c.get("/reset-password")
        assert r.status_code == 400 and "invalid" in r.text
        r = c.get("/reset-password?token=%3Cscript%3E")
        assert r.status_code == 303 and "authgate-reset" not in r.headers.get("set-cookie", "")
        assert c.get("/verify-email").status_code == 400


def test_account_page_shows_changes_and_deletes(server: Server, mailbox: Mailbox) -> None:
    email = address()
    c = server.client()
    name, password, _ = page_register(c, email)
    mailbox.wait(email)
    assert page_login(c, name, password).status_code == 303
    page = c.get("/account").text
    assert email in page and "not verified" in page
    csrf = html.unescape(CSRF_FIELD.search(page).group(1))  # type: ignore[union-attr]
    r = c.post("/account/verification", data={"csrf_token": csrf},
               headers={"Origin": c.origin})
    assert r.status_code == 303
    mailbox.wait(email, 2)
    new = address()
    r = c.post("/account/email", data={"csrf_token": csrf, "email": new,
                                       "current_password": password},
               headers={"Origin": c.origin})
    assert r.status_code == 303 and r.headers["location"] == "/account?done=email-sent"
    open_link(c, mailbox.wait(new)[0].link("verify-email"), "verify-email")
    assert c.post("/verify-email", headers={"Origin": c.origin}).status_code == 200
    page = c.get("/account").text
    assert new in page and 'id="email-state">verified' in page
    r = c.post("/account/delete", data={"csrf_token": csrf, "current_password": "wrong"},
               headers={"Origin": c.origin})
    assert r.status_code == 403
    r = c.post("/account/delete", data={"csrf_token": "nope", "current_password": password},
               headers={"Origin": c.origin})
    assert r.status_code == 403
    r = c.post("/account/delete", data={"csrf_token": csrf, "current_password": password},
               headers={"Origin": c.origin})
    assert r.status_code == 200 and "deleted" in r.text
    assert c.get("/account").status_code == 303
    with server.client() as api:
        assert api.login(name, password).status_code == 401
