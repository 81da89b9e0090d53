"""The pages' second factor: /account enrols (inline SVG QR code), confirms, shows the
recovery codes once, removes; /login asks for the code in a second server-rendered step."""

from __future__ import annotations

import html
import re
import time
from typing import Any

from tests.blackbox.support import EVIL, signed_in
from tests.blackbox.test_mfa import code_at
from tests.blackbox.test_pages import CSRF_FIELD, FORM_TOKEN, page_login
from tests.conftest import Server
from tests.helpers import AuthClient

SECRET = re.compile(r'<code id="totp-secret">([A-Z2-7]+)</code>')
MFA_TOKEN = re.compile(r'name="mfa_token" value="([^"]+)"')


def csrf_of(c: AuthClient) -> str:
    m = CSRF_FIELD.search(c.get("/account").text)
    assert m
    return html.unescape(m.group(1))


def enrol_on_page(server: Server, c: AuthClient, password: str) -> tuple[str, list[str]]:
    csrf = csrf_of(c)
    r = c.post("/account/mfa-enrol", data={"csrf_token": csrf, "current_password": password},
               headers={"Origin": c.origin})
    assert r.status_code == 200, r.text
    assert "<svg " in r.text and 'aria-label="QR code"' in r.text
    assert "script" not in r.text.lower() and "data:" not in r.text
    assert "default-src 'none'" in r.headers["content-security-policy"]
    m = SECRET.search(r.text)
    assert m
    secret = m.group(1)
    wrong = c.post("/account/mfa-confirm", data={"csrf_token": csrf, "code": "12"},
                   headers={"Origin": c.origin})
    assert wrong.status_code == 400 and secret in wrong.text  # the same key, again
    r = c.post("/account/mfa-confirm", data={"csrf_token": csrf,
                                             "code": code_at(server, secret)},
               headers={"Origin": c.origin})
    assert r.status_code == 200, r.text
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", r.text)
    assert len(codes) == 10
    page = c.get("/account").text
    assert 'data-state="on"' in page and "10 recovery codes left" in page
    assert codes[0] not in page  # shown once
    return secret, codes


def test_enrol_login_in_two_steps_and_remove(server: Server) -> None:
    c, username, password = signed_in(server)
    assert 'id="reauth"' in server.client().get("/login?reauth=1&next=/x").text
    assert 'id="reauth"' not in server.client().get("/login").text
    refused = c.post("/account/mfa-enrol", data={"csrf_token": csrf_of(c),
                                                 "current_password": "nope"},
                     headers={"Origin": c.origin})
    assert refused.status_code == 403
    cross = c.post("/account/mfa-enrol", data={"csrf_token": csrf_of(c),
                                               "current_password": password},
                   headers={"Origin": EVIL})
    assert cross.status_code == 403
    secret, codes = enrol_on_page(server, c, password)

    b = server.client()
    r = page_login(b, username, password, next_="/account?x=1")
    assert r.status_code == 200 and 'action="/login/mfa"' in r.text
    assert b.session_value is None
    token = html.unescape(MFA_TOKEN.search(r.text).group(1))  # type: ignore[union-attr]
    form_token = html.unescape(FORM_TOKEN.search(r.text).group(1))  # type: ignore[union-attr]
    bad = b.post("/login/mfa", data={"form_token": form_token, "mfa_token": token,
                                     "code": "000000" if code_at(server, secret, 1) != "000000"
                                     else "111111", "next": "/account?x=1"},
                 headers={"Origin": b.origin})
    assert bad.status_code == 401 and "not right" in bad.text and b.session_value is None
    forged = b.post("/login/mfa", data={"form_token": "x", "mfa_token": token,
                                        "code": code_at(server, secret, 1)},
                    headers={"Origin": b.origin})
    assert forged.status_code == 403
    r = b.post("/login/mfa", data={"form_token": form_token, "mfa_token": token,
                                   "code": code_at(server, secret, 1), "next": "/account?x=1"},
               headers={"Origin": b.origin})
    assert r.status_code == 303 and r.headers["location"] == "/account?x=1"
    assert b.session_value

    # a recovery code on the form, then the notice on /account
    d = server.client()
    r = page_login(d, username, password)
    token = html.unescape(MFA_TOKEN.search(r.text).group(1))  # type: ignore[union-attr]
    form_token = html.unescape(FORM_TOKEN.search(r.text).group(1))  # type: ignore[union-attr]
    r = d.post("/login/mfa", data={"form_token": form_token, "mfa_token": token,
                                   "code": codes[3]}, headers={"Origin": d.origin})
    assert r.status_code == 303
    deadline = time.monotonic() + 5
    while 'id="recovery-used"' not in (page := d.get("/account").text) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert 'id="recovery-used"' in page and "9 recovery codes left" in page

    r = b.post("/account/mfa-remove", data={"csrf_token": csrf_of(b),
                                            "current_password": password, "code": codes[0]},
               headers={"Origin": b.origin})
    assert r.status_code == 303 and r.headers["location"] == "/account?done=mfa-removed"
    assert 'data-state="off"' in b.get("/account").text
    assert page_login(server.client(), username, password).status_code == 303


def test_mfa_required_roles_withhold_scopes_until_a_second_factor(make_server: Any) -> None:
    srv = make_server(mfa_required_roles="admin", role_scopes="admin=admin:all;staff=read")
    username, password = srv.new_user(roles=("admin", "staff"))
    c = srv.client()
    r = c.login(username, password)
    assert r.status_code == 200
    assert c.get("/auth/me").json()["scopes"] == ["read"]
    token = c.token(username, password).json()
    assert token["scope"] == "read"
    assert c.get("/auth/verify", params={"scope": "admin:all"}).status_code == 403
    r = c.unsafe("POST", "/auth/mfa/totp", json={"current_password": password})
    secret = r.json()["secret"]
    assert c.unsafe("POST", "/auth/mfa/totp/confirm",
                    json={"code": code_at(srv, secret)}).status_code == 200
    b = srv.client()
    r = b.login(username, password)
    r = b.post("/auth/login/mfa", json={"mfa_token": r.json()["mfa_token"],
                                        "code": code_at(srv, secret, 1)})
    assert r.status_code == 200
    assert b.get("/auth/me").json()["scopes"] == ["admin:all", "read"]
    srv.advance(60)  # the steps used so far are spent: the next code
    r = b.token(username, password)
    assert r.status_code == 403
    r = b.post("/auth/token", data={"grant_type": "urn:authgate:grant-type:mfa",
                                    "mfa_token": r.json()["mfa_token"],
                                    "code": code_at(srv, secret)})
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "admin:all read"


def test_amr_is_seen_by_every_worker(make_server: Any, pg_url: str,
                                     redis_settings: dict[str, str]) -> None:
    """Two workers on PostgreSQL + Redis: a session signed in with a second factor passes
    /auth/verify?mfa=1 on either (each reads the record from Redis or the database)."""
    srv = make_server(workers=2, database_url=pg_url, **redis_settings)
    username, password = srv.new_user()
    c = srv.client()
    c.login(username, password)
    secret = c.unsafe("POST", "/auth/mfa/totp", json={"current_password": password}
                      ).json()["secret"]
    assert c.unsafe("POST", "/auth/mfa/totp/confirm",
                    json={"code": code_at(srv, secret)}).status_code == 200
    b = srv.client()
    r = b.post("/auth/login/mfa", json={"mfa_token": b.login(username, password).json()[
        "mfa_token"], "code": code_at(srv, secret, 1)})
    assert r.status_code == 200
    statuses = set()
    for _ in range(20):
        with srv.client() as fresh:  # new connections: both workers answer
            fresh.jar = dict(b.jar)
            statuses.add(fresh.get("/auth/verify", params={"mfa": "1"}).status_code)
    assert statuses == {200}
    assert c.get("/auth/verify", params={"mfa": "1"}).status_code == 401
