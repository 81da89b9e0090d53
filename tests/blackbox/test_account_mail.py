"""Contract §7 (account lifecycle by mail), black-box, with a real SMTP server: the links in
the received mails are followed. Runs on SQLite and on PostgreSQL + Redis."""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import httpx
import pytest

from tests.blackbox.support import assert_error, eventually, new_password
from tests.conftest import Server, backend_server
from tests.helpers import AuthClient
from tests.mailbox import Mailbox

ALL_BACKENDS = True


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           contract_backend: str, mailbox: Mailbox) -> Iterator[Server]:
    with backend_server(request, tmp_path_factory, contract_backend, smtp_url=mailbox.url,
                        mail_from="Auth <auth@example.test>") as srv:
        yield srv


def address() -> str:
    return f"u{uuid.uuid4().hex[:10]}@Example.com"


def register(server: Server, email: str | None = None) -> tuple[str, str, dict[str, Any]]:
    name, password = f"m-{uuid.uuid4().hex[:10]}", new_password()
    body: dict[str, Any] = {"username": name, "password": password}
    if email is not None:
        body["email"] = email
    r = httpx.post(f"{server.url}/auth/register", json=body, timeout=30)
    assert r.status_code == 201, r.text
    return name, password, r.json()


def verified_user(server: Server, mailbox: Mailbox) -> tuple[str, str, str]:
    email = address()
    name, password, _ = register(server, email)
    token = mailbox.wait(email)[0].token("verify-email")
    assert httpx.post(f"{server.url}/auth/email/verify", json={"token": token}).status_code == 200
    return name, password, email


def login(server: Server, username: str, password: str) -> AuthClient:
    c = server.client()
    r = c.login(username, password)
    assert r.status_code == 200, r.text
    return c


def post(server: Server, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=30)


# -- registration and verification ---------------------------------------------------------

def test_register_with_email_mails_a_link_that_verifies(server: Server,
                                                        mailbox: Mailbox) -> None:
    email = address()
    name, password, user = register(server, email)
    assert user["email"] == email.replace("Example.com", "example.com")  # domain normalised
    assert user["email_verified"] is False
    mail = mailbox.wait(email)[0]
    assert mail.message["From"] == "Auth <auth@example.test>"
    assert mail.message.get_body(("html",)) is not None
    link = mail.link("verify-email")
    assert link.startswith(f"{server.url}/verify-email?token=")
    token = mail.token("verify-email")
    assert len(token) >= 43  # 256 bits, base64url
    assert token in mail.html
    r = post(server, "/auth/email/verify", {"token": token})
    assert r.status_code == 200, r.text
    assert r.json()["email_verified"] is True and r.json()["username"] == name
    assert_error(post(server, "/auth/email/verify", {"token": token}), 400, "invalid_token")
    with closing(login(server, name, password)) as c:
        me = c.get("/auth/me").json()
        assert me["email"] == user["email"] and me["email_verified"] is True


def test_login_by_address_any_case(server: Server, mailbox: Mailbox) -> None:
    email = address()
    name, password, _ = register(server, email)
    for spelled in (email, email.upper(), email.lower()):
        with server.client() as c:
            r = c.login(spelled, password)
            assert r.status_code == 200, (spelled, r.text)
            assert r.json()["user"]["username"] == name
    with server.client() as c:
        assert_error(c.login(email, "wrong password here"), 401, "invalid_credentials")
    r = server.client().token(email.upper(), password)
    assert r.status_code == 200, r.text


def test_an_address_is_unique_case_insensitively(server: Server) -> None:
    email = address()
    register(server, email)
    r = post(server, "/auth/register", {"username": f"x-{uuid.uuid4().hex[:8]}",
                                        "password": new_password(), "email": email.upper()})
    assert_error(r, 409, "email_taken")


@pytest.mark.parametrize("bad", ["not an address", "a@", "@b.example", "a b@c.example"])
def test_a_bad_address_is_422(server: Server, bad: str) -> None:
    r = post(server, "/auth/register", {"username": f"x-{uuid.uuid4().hex[:8]}",
                                        "password": new_password(), "email": bad})
    assert_error(r, 422, "invalid_email")
    assert_error(post(server, "/auth/password/forgot", {"email": bad}), 422, "invalid_email")
    assert_error(post(server, "/auth/password/forgot", {"email": 5}), 400)


def test_resend_verification(server: Server, mailbox: Mailbox) -> None:
    email = address()
    name, password, _ = register(server, email)
    first = mailbox.wait(email)[0].token("verify-email")
    with closing(login(server, name, password)) as c:
        assert_error(httpx.post(f"{server.url}/auth/email/verification"), 401)
        r = c.unsafe("POST", "/auth/email/verification")
        assert r.status_code == 202, r.text
        second = mailbox.wait(email, 2)[1].token("verify-email")
        assert second != first
        # The new verification mail replaces the first one's token.
        assert_error(post(server, "/auth/email/verify", {"token": first}), 400, "invalid_token")
        assert post(server, "/auth/email/verify", {"token": second}).status_code == 200
        assert_error(c.unsafe("POST", "/auth/email/verification"), 409)


def test_verification_token_expires(server: Server, mailbox: Mailbox) -> None:
    email = address()
    register(server, email)
    token = mailbox.wait(email)[0].token("verify-email")
    server.advance(86400 + 5)
    assert_error(post(server, "/auth/email/verify", {"token": token}), 400, "invalid_token")


@pytest.mark.parametrize("token", ["", "x" * 43, "x" * 5000, None, 7, ["a"]])
def test_bad_tokens_are_400(server: Server, token: Any) -> None:
    r = post(server, "/auth/email/verify", {"token": token})
    assert r.status_code in (400, 413), r.text
    r = post(server, "/auth/password/reset", {"token": token, "new_password": new_password()})
    assert r.status_code in (400, 413), r.text


# -- forgot / reset -------------------------------------------------------------------------

def test_forgot_answers_the_same_for_known_and_unknown(server: Server,
                                                       mailbox: Mailbox) -> None:
    _, _, email = verified_user(server, mailbox)
    unknown = address()
    times: dict[str, list[float]] = {"known": [], "unknown": []}
    bodies = set()
    for _ in range(3):
        for kind, addr in (("known", email), ("unknown", unknown)):
            started = time.perf_counter()
            r = post(server, "/auth/password/forgot", {"email": addr})
            times[kind].append(time.perf_counter() - started)
            assert r.status_code == 202, r.text
            bodies.add(r.text)
    assert len(bodies) == 1
    assert abs(statistics.median(times["known"]) - statistics.median(times["unknown"])) < 0.1
    mails = mailbox.wait(email, 4)  # the verification and three resets
    assert all("reset-password?token=" in m.text for m in mails[1:])
    time.sleep(0.5)
    assert mailbox.to(unknown) == []


def test_reset_ends_every_session_and_token(server: Server, mailbox: Mailbox) -> None:
    name, password, email = verified_user(server, mailbox)
    session = login(server, name, password)
    tokens = server.client().token(name, password).json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert httpx.get(f"{server.url}/auth/me", headers=bearer).status_code == 200
    assert post(server, "/auth/password/forgot", {"email": email}).status_code == 202
    token = mailbox.wait(email, 2)[1].token("reset-password")
    assert_error(post(server, "/auth/password/reset", {"token": token, "new_password": "short"}),
                 422)  # the policy, and the token survives it
    new = new_password()
    r = post(server, "/auth/password/reset", {"token": token, "new_password": new})
    assert r.status_code == 204, r.text
    assert eventually(lambda: httpx.get(f"{server.url}/auth/me",
                                        headers=bearer).status_code == 401, within=1.0)
    assert session.get("/auth/me").status_code == 401
    r = post(server, "/auth/token", {"grant_type": "refresh_token",
                                     "refresh_token": tokens["refresh_token"]})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert_error(post(server, "/auth/password/reset", {"token": token, "new_password": new}),
                 400, "invalid_token")  # single use
    with server.client() as c:
        assert c.login(name, password).status_code == 401
        assert c.login(email, new).status_code == 200


def test_a_new_reset_or_a_password_change_ends_earlier_reset_tokens(server: Server,
                                                                    mailbox: Mailbox) -> None:
    name, password, email = verified_user(server, mailbox)
    post(server, "/auth/password/forgot", {"email": email})
    post(server, "/auth/password/forgot", {"email": email})
    first, second = (m.token("reset-password") for m in mailbox.wait(email, 3)[1:3])
    assert_error(post(server, "/auth/password/reset",
                      {"token": first, "new_password": new_password()}), 400, "invalid_token")
    with closing(login(server, name, password)) as c:
        r = c.unsafe("POST", "/auth/password", json={"current_password": password,
                                                     "new_password": new_password()})
        assert r.status_code == 204, r.text
    assert_error(post(server, "/auth/password/reset",
                      {"token": second, "new_password": new_password()}), 400, "invalid_token")


def test_reset_token_expires(server: Server, mailbox: Mailbox) -> None:
    _, _, email = verified_user(server, mailbox)
    post(server, "/auth/password/forgot", {"email": email})
    token = mailbox.wait(email, 2)[1].token("reset-password")
    server.advance(1801)
    assert_error(post(server, "/auth/password/reset",
                      {"token": token, "new_password": new_password()}), 400, "invalid_token")


def test_forgot_is_throttled_per_address(server: Server, mailbox: Mailbox) -> None:
    _, _, email = verified_user(server, mailbox)
    for addr in (email, address()):  # known or not: the same limit
        codes = [post(server, "/auth/password/forgot", {"email": addr}).status_code
                 for _ in range(6)]
        assert codes == [202] * 5 + [429], codes
    r = post(server, "/auth/password/forgot", {"email": email.upper()})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    time.sleep(0.5)
    assert len(mailbox.to(email)) == 1 + 5  # no mail bombing


def test_the_database_holds_no_raw_mail_token(server: Server, mailbox: Mailbox) -> None:
    email = address()
    register(server, email)
    token = mailbox.wait(email)[0].token("verify-email")
    post(server, "/auth/password/forgot", {"email": email})
    reset = mailbox.wait(email, 2)[1].token("reset-password")
    dump = dump_database(server)
    assert "mail_tokens" in dump and len(dump) > 1000
    assert token not in dump and reset not in dump


def dump_database(server: Server) -> str:
    url = str(server.settings["database_url"])
    if url.startswith("sqlite"):
        conn = sqlite3.connect(server.db_path)
        try:
            return "\n".join(conn.iterdump())
        finally:
            conn.close()
    import asyncpg

    async def dump() -> str:
        conn = await asyncpg.connect(url)
        try:
            tables = [r[0] for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
            out = []
            for table in tables:
                out.append(f"-- {table}")
                out += [str(tuple(r)) for r in await conn.fetch(f'SELECT * FROM "{table}"')]
            return "\n".join(out)
        finally:
            await conn.close()

    return asyncio.run(dump())


# -- address change and deletion ----------------------------------------------------------

def test_address_change_confirmed_by_the_new_address(server: Server,
                                                     mailbox: Mailbox) -> None:
    name, password, old = verified_user(server, mailbox)
    new = address()
    with closing(login(server, name, password)) as c:
        assert_error(c.unsafe("PUT", "/auth/email", json={"email": new,
                                                          "current_password": "wrong one"}),
                     403, "invalid_credentials")
        assert_error(c.unsafe("PUT", "/auth/email", json={"email": "nope",
                                                          "current_password": password}), 422)
        _, _, taken = register(server, address())
        assert_error(c.unsafe("PUT", "/auth/email", json={"email": taken["email"],
                                                          "current_password": password}), 409)
        r = c.unsafe("PUT", "/auth/email", json={"email": new, "current_password": password})
        assert r.status_code == 202, r.text
        notice = mailbox.wait(old, 2)[1]
        assert "?token=" not in notice.text and new not in notice.text  # masked
        confirm = mailbox.wait(new)[0].token("verify-email")
        assert c.get("/auth/me").json()["email"].lower() == old.lower()  # not yet
        r = post(server, "/auth/email/verify", {"token": confirm})
        assert r.status_code == 200, r.text
        assert r.json()["email"].lower() == new.lower() and r.json()["email_verified"]
        assert eventually(lambda: c.get("/auth/me").json()["email"].lower() == new.lower())
    with server.client() as c:
        assert c.login(new, password).status_code == 200
    with server.client() as c:
        assert c.login(old, password).status_code == 401
    assert post(server, "/auth/password/forgot", {"email": old}).status_code == 202
    time.sleep(0.5)
    assert len(mailbox.to(old)) == 2  # the old address gets no reset link any more


def test_delete_account(server: Server, mailbox: Mailbox) -> None:
    name, password, email = verified_user(server, mailbox)
    session = login(server, name, password)
    tokens = server.client().token(name, password).json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert_error(session.unsafe("DELETE", "/auth/account",
                                json={"current_password": "wrong one"}), 403)
    assert_error(httpx.request("DELETE", f"{server.url}/auth/account",
                               json={"current_password": password}), 401)
    r = session.unsafe("DELETE", "/auth/account", json={"current_password": password})
    assert r.status_code == 204, r.text
    assert session.get("/auth/me").status_code == 401
    assert eventually(lambda: httpx.get(f"{server.url}/auth/me",
                                        headers=bearer).status_code == 401, within=1.0)
    r = post(server, "/auth/token", {"grant_type": "refresh_token",
                                     "refresh_token": tokens["refresh_token"]})
    assert r.status_code == 400
    with server.client() as c:
        assert c.login(name, password).status_code == 401
        assert c.login(email, password).status_code == 401
    # Everything went: the name and the address are free again.
    register(server, email)
    done = server.cli("users", "list", "--json")
    assert name not in done.stdout


def test_require_verified_email(make_server: Any, mailbox: Mailbox) -> None:
    srv = make_server(smtp_url=mailbox.url, require_verified_email=True)
    email = address()
    name, password, _ = register(srv, email)
    with srv.client() as c:
        assert_error(c.login(name, password), 403, "email_not_verified")
        assert_error(c.login(name, "a wrong password"), 401, "invalid_credentials")
    token = mailbox.wait(email)[0].token("verify-email")
    assert post(srv, "/auth/email/verify", {"token": token}).status_code == 200
    with srv.client() as c:
        assert c.login(name, password).status_code == 200


def test_address_and_username_share_one_account_throttle(server: Server,
                                                         mailbox: Mailbox) -> None:
    name, _, email = verified_user(server, mailbox)
    codes = []
    with server.client() as c:
        for i in range(12):
            codes.append(c.login(name if i % 2 else email.upper(), "wrong password!").status_code)
            if codes[-1] == 429:
                break
    # The default lock threshold is 5 straight failures, whichever name they used.
    assert codes[-1] == 429 and len(codes) <= 6, codes


def test_every_step_is_in_the_audit_trail(server: Server, mailbox: Mailbox) -> None:
    from tests.blackbox.test_audit_webhooks import audit_list

    name, password, email = verified_user(server, mailbox)
    user_id = httpx.post(f"{server.url}/auth/login", json={
        "username": name, "password": password}).json()["user"]["id"]
    post(server, "/auth/password/forgot", {"email": email})
    token = mailbox.wait(email, 2)[1].token("reset-password")
    new = new_password()
    assert post(server, "/auth/password/reset", {"token": token, "new_password": new}
                ).status_code == 204
    c = login(server, name, new)
    other = address()
    assert c.unsafe("PUT", "/auth/email", json={"email": other, "current_password": new}
                    ).status_code == 202
    post(server, "/auth/email/verify", {"token": mailbox.wait(other)[0].token("verify-email")})
    assert c.unsafe("DELETE", "/auth/account", json={"current_password": new}).status_code == 204
    wanted = ["user.created", "email.verification_sent", "email.verified",
              "password.reset_requested", "password.changed", "password.reset",
              "email.change_requested", "email.changed", "user.deleted"]

    def seen() -> list[str]:
        return [e["type"] for e in audit_list(server) if e["user_id"] == user_id]

    assert eventually(lambda: set(wanted) <= set(seen()), within=3), seen()
    types = seen()
    assert [t for t in types if t in wanted] == wanted, types
    assert all(token not in str(e) for e in audit_list(server))
