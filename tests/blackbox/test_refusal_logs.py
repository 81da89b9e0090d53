"""Operators see why a request was refused (issue 16 item 5): the client gets the one
uninformative body, the server log gets the reason at INFO with the request id — and never
the credential."""

from __future__ import annotations

import httpx
import pytest

from tests.blackbox.support import eventually, register, signed_in
from tests.conftest import Server


def logged(server: Server, rid: str, reason: str) -> bool:
    return eventually(lambda: any(rid in line and reason in line
                                  for line in server.log().splitlines()), 5)


@pytest.fixture
def tokens(server: Server) -> tuple[str, str]:
    username, password, _ = register(server)
    with server.client() as c:
        pair = c.token(username, password).json()
    return pair["access_token"], pair["refresh_token"]


def test_token_refusals_are_logged_with_their_reason(server: Server,
                                                    tokens: tuple[str, str]) -> None:
    access, _ = tokens
    head, body, sig = access.split(".")
    forged = f"{head}.{body}.{sig[:-4]}AAAA"
    r = httpx.get(f"{server.url}/auth/me", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    assert logged(server, r.headers["x-request-id"], "bad signature")

    assert httpx.post(f"{server.url}/auth/revoke", data={"token": access}).status_code == 200
    r = httpx.get(f"{server.url}/auth/me", headers={"Authorization": f"Bearer {access}"})
    assert r.status_code == 401 and r.json() == {"error": "invalid_token",
                                                 "detail": "The access token is invalid."}
    assert logged(server, r.headers["x-request-id"], "revoked")
    assert access not in server.log() and forged not in server.log()


def test_expired_token_is_logged_as_expired(server: Server, tokens: tuple[str, str]) -> None:
    access, _ = tokens
    server.advance(3600)
    r = httpx.get(f"{server.url}/auth/me", headers={"Authorization": f"Bearer {access}"})
    assert r.status_code == 401
    assert logged(server, r.headers["x-request-id"], "expired")


def test_csrf_refusals_are_logged_with_their_reason(server: Server) -> None:
    c, _, _ = signed_in(server)
    r = c.post("/auth/logout", headers={"Origin": server.url})
    assert r.status_code == 403
    assert logged(server, r.headers["x-request-id"], "missing CSRF token")
    r = c.post("/auth/logout", headers={"Origin": "https://evil.example",
                                        "X-CSRF-Token": c.csrf or ""})
    assert r.status_code == 403
    assert logged(server, r.headers["x-request-id"], "wrong Origin")
    r = c.post("/auth/logout", headers={"Origin": server.url, "X-CSRF-Token": "nope"})
    assert logged(server, r.headers["x-request-id"], "CSRF token mismatch")
    assert (c.csrf or "-") not in server.log()


def test_form_refusals_are_logged(server: Server) -> None:
    username, password, _ = register(server)
    with server.client() as c:
        c.get("/login")
        r = c.post("/login", headers={"Origin": server.url},
                   data={"form_token": "not-the-token", "username": username,
                         "password": password})
        assert r.status_code == 403
        assert logged(server, r.headers["x-request-id"], "login form: CSRF token mismatch")
        form = c.get("/login").text
        token = form.split('name="form_token" value="', 1)[1].split('"', 1)[0]
        r = c.post("/login", headers={"Origin": server.url},
                   data={"form_token": token, "username": username,
                         "password": "wrong password for sure"})
        assert r.status_code == 401
        assert logged(server, r.headers["x-request-id"], "login form: invalid_credentials")
    assert password not in server.log()


def test_a_request_without_any_credential_is_not_logged(server: Server) -> None:
    r = httpx.get(f"{server.url}/auth/me")
    assert r.status_code == 401
    rid = r.headers["x-request-id"]
    assert not any(rid in line and "refused" in line for line in server.log().splitlines())
