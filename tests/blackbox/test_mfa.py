"""Second factors through HTTP (contract §8): TOTP enrolment, login with a second factor on
both flows, replay, wrong codes, recovery codes, amr/auth_time, step-up. Codes are made as
an authenticator app makes them: pyotp with the enrolled secret, at the server's time."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pyotp
import pytest

from tests.blackbox.support import register
from tests.conftest import Server
from tests.helpers import AuthClient

ALL_BACKENDS = True
MFA_GRANT = "urn:authgate:grant-type:mfa"


def code_at(server: Server, secret: str, steps_ahead: int = 0) -> str:
    """The app's code at the server's (moved) time, ``steps_ahead`` 30 s steps later."""
    return pyotp.TOTP(secret).at(int(time.time() + server.offset) + 30 * steps_ahead)


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def enrolled(server: Server) -> tuple[str, str, str, list[str]]:
    """A fresh user with an active authenticator app: (username, password, secret,
    recovery codes). The confirming code was the current step's."""
    username, password, _ = register(server)
    c = server.client()
    assert c.login(username, password).status_code == 200
    r = c.unsafe("POST", "/auth/mfa/totp", json={"current_password": password})
    assert r.status_code == 200, r.text
    secret = r.json()["secret"]
    r = c.unsafe("POST", "/auth/mfa/totp/confirm", json={"code": code_at(server, secret)})
    assert r.status_code == 200, r.text
    codes = r.json()["recovery_codes"]
    c.close()
    return username, password, secret, codes


def mfa_login(server: Server, username: str, password: str) -> tuple[AuthClient, str]:
    c = server.client()
    r = c.login(username, password)
    assert r.status_code == 401, r.text
    return c, r.json()["mfa_token"]


def test_enrolment_needs_the_password_and_a_code(server: Server) -> None:
    username, password, _ = register(server)
    c = server.client()
    assert c.login(username, password).status_code == 200
    assert server.client().post("/auth/mfa/totp", json={
        "current_password": password}).status_code == 401
    r = c.unsafe("POST", "/auth/mfa/totp", json={"current_password": "wrong " + password})
    assert r.status_code == 403
    r = c.unsafe("POST", "/auth/mfa/totp", json={"current_password": password})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"secret", "otpauth_uri"}
    assert body["otpauth_uri"].startswith("otpauth://totp/")
    assert f"secret={body['secret']}" in body["otpauth_uri"]
    # not active until confirmed: the login still needs nothing more
    assert server.client().login(username, password).status_code == 200
    wrong = c.unsafe("POST", "/auth/mfa/totp/confirm", json={"code": "000000"
                     if code_at(server, body["secret"]) != "000000" else "111111"})
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_code"
    r = c.unsafe("POST", "/auth/mfa/totp/confirm",
                 json={"code": code_at(server, body["secret"])})
    assert r.status_code == 200, r.text
    codes = r.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    again = c.unsafe("POST", "/auth/mfa/totp", json={"current_password": password})
    assert again.status_code == 409


def test_login_needs_the_second_factor_and_sets_no_session(server: Server) -> None:
    username, password, secret, _ = enrolled(server)
    c = server.client()
    r = c.login(username, password)
    assert r.status_code == 401
    body = r.json()
    assert body["error"] == "mfa_required" and body["detail"]
    assert body["methods"] == ["totp", "recovery_code"]
    assert len(body["mfa_token"]) >= 32
    assert c.session_value is None
    assert not [h for h in r.headers.get_list("set-cookie") if h.startswith(c.session_cookie)]
    r = c.post("/auth/login/mfa", json={"mfa_token": body["mfa_token"],
                                        "code": code_at(server, secret, 1)})
    assert r.status_code == 200, r.text
    assert r.json()["user"]["username"] == username and r.json()["csrf_token"]
    assert c.session_value
    me = c.get("/auth/me").json()
    assert me["amr"] == ["pwd", "otp", "mfa"]
    assert abs(me["auth_time"] - (time.time() + server.offset)) < 60
    # the token is spent
    again = c.post("/auth/login/mfa", json={"mfa_token": body["mfa_token"],
                                            "code": code_at(server, secret, 1)})
    assert again.status_code == 401


def test_a_code_accepted_once_is_refused_when_replayed(server: Server) -> None:
    username, password, secret, _ = enrolled(server)
    code = code_at(server, secret, 1)
    c, token = mfa_login(server, username, password)
    assert c.post("/auth/login/mfa", json={"mfa_token": token, "code": code}).status_code == 200
    c2, token2 = mfa_login(server, username, password)
    r = c2.post("/auth/login/mfa", json={"mfa_token": token2, "code": code})
    assert r.status_code == 400 and r.json()["error"] == "invalid_code"
    # ... and the confirming step (earlier) too
    r = c2.post("/auth/login/mfa", json={"mfa_token": token2, "code": code_at(server, secret)})
    assert r.status_code == 400
    # the next step works
    server.advance(60)
    r = c2.post("/auth/login/mfa", json={"mfa_token": token2, "code": code_at(server, secret)})
    assert r.status_code == 200, r.text


def test_wrong_codes_kill_the_mfa_token(server: Server) -> None:
    username, password, secret, _ = enrolled(server)
    c, token = mfa_login(server, username, password)
    good = code_at(server, secret, 1)
    bad = "123456" if good != "123456" else "654321"
    statuses = [c.post("/auth/login/mfa", json={"mfa_token": token, "code": bad}).status_code
                for _ in range(5)]
    assert statuses[:4] == [400] * 4
    assert statuses[4] in (401, 429)
    r = c.post("/auth/login/mfa", json={"mfa_token": token, "code": good})
    assert r.status_code in (401, 429)
    assert c.session_value is None


def test_the_mfa_token_lives_five_minutes(server: Server) -> None:
    username, password, secret, _ = enrolled(server)
    c, token = mfa_login(server, username, password)
    server.advance(301)
    r = c.post("/auth/login/mfa", json={"mfa_token": token, "code": code_at(server, secret)})
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_mfa_token"
    bad = c.post("/auth/login/mfa", json={"mfa_token": "x" * 43, "code": "123456"})
    assert bad.status_code == 401
    assert c.post("/auth/login/mfa", json={"mfa_token": 5, "code": []}).status_code in (400, 401)


def test_a_recovery_code_works_once_and_is_audited(server: Server) -> None:
    username, password, _, codes = enrolled(server)
    c, token = mfa_login(server, username, password)
    r = c.post("/auth/login/mfa", json={"mfa_token": token, "code": codes[0].upper()})
    assert r.status_code == 200, r.text
    assert c.get("/auth/me").json()["amr"] == ["pwd", "otp", "mfa"]
    c2, token2 = mfa_login(server, username, password)
    r = c2.post("/auth/login/mfa", json={"mfa_token": token2, "code": codes[0]})
    assert r.status_code == 400
    r = c2.post("/auth/login/mfa", json={"mfa_token": token2, "code": codes[1]})
    assert r.status_code == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # events are stored shortly after
        page = c.get("/account").text
        if "Recovery code used" in page:
            break
        time.sleep(0.1)
    assert "Recovery code used" in page
    assert "8 recovery codes left" in page


def test_token_endpoint_mfa_grant_and_amr_claims(server: Server) -> None:
    username, password, secret, _ = enrolled(server)
    c = server.client()
    r = c.token(username, password)
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["error"] == "mfa_required" and body["error_description"]
    assert "access_token" not in body
    r = c.post("/auth/token", data={"grant_type": MFA_GRANT, "mfa_token": body["mfa_token"],
                                    "code": code_at(server, secret, 1)})
    assert r.status_code == 200, r.text
    tokens = r.json()
    claims = claims_of(tokens["access_token"])
    assert claims["amr"] == ["pwd", "otp", "mfa"]
    auth_time = claims["auth_time"]
    me = c.get("/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.json()["amr"] == ["pwd", "otp", "mfa"]
    server.advance(120)
    r = c.post("/auth/token", data={"grant_type": "refresh_token",
                                    "refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200, r.text
    refreshed = claims_of(r.json()["access_token"])
    assert refreshed["amr"] == ["pwd", "otp", "mfa"]
    assert refreshed["auth_time"] == auth_time < refreshed["iat"]
    # a wrong code at the grant; a session mfa_token is not a token one
    r = c.token(username, password)
    bad = c.post("/auth/token", data={"grant_type": MFA_GRANT,
                                      "mfa_token": r.json()["mfa_token"], "code": "12"})
    assert bad.status_code == 400
    _, session_token = mfa_login(server, username, password)
    r = c.post("/auth/token", data={"grant_type": MFA_GRANT, "mfa_token": session_token,
                                    "code": code_at(server, secret, 1)})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert c.post("/auth/token", data={"grant_type": MFA_GRANT}).status_code == 400


def test_password_only_sign_ins_say_pwd(server: Server) -> None:
    username, password, _ = register(server)
    c = server.client()
    assert c.login(username, password).status_code == 200
    assert c.get("/auth/me").json()["amr"] == ["pwd"]
    r = c.token(username, password)
    assert claims_of(r.json()["access_token"])["amr"] == ["pwd"]


def test_step_up_challenges(server: Server) -> None:
    username, password, _ = register(server)
    c = server.client()
    assert c.login(username, password).status_code == 200
    assert c.get("/auth/verify").status_code == 200
    r = c.get("/auth/verify", params={"mfa": "1"})
    assert r.status_code == 401
    assert r.json()["error"] == "insufficient_user_authentication"
    header = r.headers["www-authenticate"]
    assert header.startswith('Bearer error="insufficient_user_authentication"')
    assert 'error_description="' in header and 'acr_values="mfa"' in header
    assert c.get("/auth/verify", params={"max_age": "600"}).status_code == 200
    server.advance(30)
    r = c.get("/auth/verify", params={"max_age": "10"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].endswith("max_age=10")
    assert c.get("/auth/verify", params={"max_age": "soon"}).status_code == 400
    # with a second factor
    username, password, secret, _ = enrolled(server)
    c, token = mfa_login(server, username, password)
    assert c.post("/auth/login/mfa", json={"mfa_token": token,
                                           "code": code_at(server, secret, 1)}).status_code == 200
    r = c.get("/auth/verify", params={"mfa": "1"})
    assert r.status_code == 200 and r.headers["x-auth-amr"] == "pwd otp mfa"


def test_removing_the_factor(server: Server) -> None:
    username, password, secret, codes = enrolled(server)
    c, token = mfa_login(server, username, password)
    r = c.post("/auth/login/mfa", json={"mfa_token": token, "code": code_at(server, secret, 1)})
    assert r.status_code == 200
    c.csrf = r.json()["csrf_token"]
    wrong = c.unsafe("DELETE", "/auth/mfa/totp", json={"current_password": password,
                                                        "code": "999999"})
    assert wrong.status_code == 403 and wrong.json()["error"] == "invalid_code"
    wrong = c.unsafe("DELETE", "/auth/mfa/totp", json={"current_password": "no " + password,
                                                        "code": codes[0]})
    assert wrong.status_code == 403 and wrong.json()["error"] == "invalid_credentials"
    r = c.unsafe("DELETE", "/auth/mfa/totp", json={"current_password": password,
                                                    "code": codes[1]})
    assert r.status_code == 204, r.text
    assert server.client().login(username, password).status_code == 200


def test_no_usable_secret_in_a_database_dump(server: Server) -> None:
    username, password, secret, codes = enrolled(server)
    _, token = mfa_login(server, username, password)
    dump = database_dump(server)
    assert username in dump  # the dump is real
    for value in (secret, token, *codes, *(c.replace("-", "") for c in codes)):
        assert value not in dump and value.lower() not in dump.lower()


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
            out = []
            for table in ("users", "mfa_totp", "mfa_recovery_codes", "mfa_pending",
                          "audit_events", "sessions"):
                rows = await conn.fetch(f"SELECT * FROM {table}")
                out += [repr(dict(r)) for r in rows]
            return "\n".join(out)
        finally:
            await conn.close()

    return asyncio.run(dump())


@pytest.mark.parametrize("body", [{"code": 123456}, {"code": "1" * 100}, {"nope": 1}, {}])
def test_bad_confirm_bodies_are_4xx(server: Server, body: dict[str, Any]) -> None:
    username, password, _ = register(server)
    c = server.client()
    assert c.login(username, password).status_code == 200
    r = c.unsafe("POST", "/auth/mfa/totp/confirm", json=body)
    assert 400 <= r.status_code < 500


def test_operator_mfa_reset_ends_sessions(server: Server) -> None:
    username, password, secret, _ = enrolled(server)
    c, token = mfa_login(server, username, password)
    assert c.post("/auth/login/mfa", json={"mfa_token": token,
                                           "code": code_at(server, secret, 1)}).status_code == 200
    assert c.get("/auth/me").status_code == 200
    done = server.cli("users", "mfa-reset", username)
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 5
    while c.get("/auth/me").status_code != 401 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert c.get("/auth/me").status_code == 401
    assert server.client().login(username, password).status_code == 200
    assert server.cli("users", "mfa-reset", "nobody-at-all").returncode != 0


def test_wrong_codes_are_throttled_per_account_across_mfa_tokens(server: Server) -> None:
    username, password, secret, _ = enrolled(server)
    c, token = mfa_login(server, username, password)
    good = code_at(server, secret, 1)
    bad = "123456" if good != "123456" else "654321"
    for _ in range(5):
        c.post("/auth/login/mfa", json={"mfa_token": token, "code": bad})
    _, fresh = mfa_login(server, username, password)  # a new token: the account is locked
    r = c.post("/auth/login/mfa", json={"mfa_token": fresh, "code": good})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    server.advance(5)
    r = c.post("/auth/login/mfa", json={"mfa_token": fresh, "code": good})
    assert r.status_code == 200, r.text
