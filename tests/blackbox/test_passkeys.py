"""Passkeys (WebAuthn) through HTTP: register, list, rename, delete; a passwordless sign-in;
a passkey as the second factor of both flows; what is refused (another caller's challenge,
a replay, no user verification, another origin, a counter going backwards, an expired
challenge, another user's passkey). The authenticator is tests/webauthn_soft.py: real ES256
signatures checked by the server's real ``webauthn`` library."""

from __future__ import annotations

import base64
import json
import sqlite3
from typing import Any

import pytest

from tests.blackbox.support import eventually, signed_in
from tests.blackbox.test_mfa import MFA_GRANT, claims_of, enrolled
from tests.conftest import Server
from tests.helpers import AuthClient
from tests.webauthn_soft import SoftAuthenticator

ALL_BACKENDS = True


def add_passkey(server: Server, c: AuthClient, auth: SoftAuthenticator,
                name: str | None = None) -> dict[str, Any]:
    r = c.unsafe("POST", "/auth/passkeys/register/options")
    assert r.status_code == 200, r.text
    options = r.json()["publicKey"]
    body: dict[str, Any] = {"credential": auth.create(options)}
    if name is not None:
        body["name"] = name
    r = c.unsafe("POST", "/auth/passkeys/register", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def login_options(c: AuthClient) -> dict[str, Any]:
    r = c.get("/auth/passkeys/login/options")
    assert r.status_code == 200, r.text
    return dict(r.json()["publicKey"])


def passkey_login(c: AuthClient, credential: dict[str, Any]) -> Any:
    r = c.post("/auth/passkeys/login", json={"credential": credential},
               headers={"Origin": c.origin})
    if r.status_code == 200:
        c.csrf = r.json()["csrf_token"]
    return r


def test_register_list_rename_delete(server: Server) -> None:
    c, _, _ = signed_in(server)
    auth = SoftAuthenticator(server.url)
    r = c.unsafe("POST", "/auth/passkeys/register/options")
    assert r.status_code == 200, r.text
    options = r.json()["publicKey"]
    assert options["rp"]["id"] == "127.0.0.1"
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["attestation"] == "none"
    assert {p["alg"] for p in options["pubKeyCredParams"]} == {-8, -7, -257}
    r = c.unsafe("POST", "/auth/passkeys/register",
                 json={"credential": auth.create(options), "name": "Laptop"})
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["name"] == "Laptop" and first["last_used_at"] is None
    second = add_passkey(server, c, auth)
    assert second["name"] == "Passkey 2"
    # the second one's options excluded the first credential
    r = c.unsafe("POST", "/auth/passkeys/register/options")
    excluded = {d["id"] for d in r.json()["publicKey"]["excludeCredentials"]}
    assert excluded == {base64.urlsafe_b64encode(k.credential_id).rstrip(b"=").decode()
                        for k in auth.credentials}
    listed = c.get("/auth/passkeys").json()["passkeys"]
    assert [k["id"] for k in listed] == [first["id"], second["id"]]
    assert c.unsafe("PATCH", f"/auth/passkeys/{second['id']}",
                    json={"name": "  Phone  "}).status_code == 204
    assert c.get("/auth/passkeys").json()["passkeys"][1]["name"] == "Phone"
    assert c.unsafe("PATCH", f"/auth/passkeys/{second['id']}",
                    json={"name": "x" * 65}).status_code == 400
    # another user sees none of them and can touch none of them
    other, _, _ = signed_in(server)
    assert other.get("/auth/passkeys").json() == {"passkeys": []}
    assert other.unsafe("DELETE", f"/auth/passkeys/{first['id']}").status_code == 404
    assert other.unsafe("PATCH", f"/auth/passkeys/{first['id']}",
                        json={"name": "mine"}).status_code == 404
    assert c.unsafe("DELETE", f"/auth/passkeys/{first['id']}").status_code == 204
    assert c.unsafe("DELETE", f"/auth/passkeys/{first['id']}").status_code == 404
    assert [k["id"] for k in c.get("/auth/passkeys").json()["passkeys"]] == [second["id"]]
    # the deleted one signs nobody in any more
    fresh = server.client()
    r = passkey_login(fresh, auth.get(login_options(fresh), credential=auth.credentials[0]))
    assert r.status_code == 401 and r.json()["error"] == "invalid_passkey"


def test_registering_needs_a_session_csrf_and_a_recent_sign_in(server: Server) -> None:
    c, _, _ = signed_in(server)
    assert server.client().post("/auth/passkeys/register/options").status_code == 401
    r = c.post("/auth/passkeys/register/options", headers={"Origin": c.origin})
    assert r.status_code == 403  # no CSRF token
    auth = SoftAuthenticator(server.url)
    options = c.unsafe("POST", "/auth/passkeys/register/options").json()["publicKey"]
    server.advance(601)
    try:
        r = c.unsafe("POST", "/auth/passkeys/register",
                     json={"credential": auth.create(options)})
        assert r.status_code == 401, r.text
        assert r.json()["error"] == "insufficient_user_authentication"
        assert "max_age=600" in r.headers["www-authenticate"]
        r = c.unsafe("POST", "/auth/passkeys/register/options")
        assert r.status_code == 401
    finally:
        server.advance(0)


def test_a_registration_challenge_is_the_callers_and_works_once(server: Server) -> None:
    c, username, password = signed_in(server)
    other_session = server.client()
    assert other_session.login(username, password).status_code == 200
    auth = SoftAuthenticator(server.url)
    options = c.unsafe("POST", "/auth/passkeys/register/options").json()["publicKey"]
    response = auth.create(options)
    # the same user's other session cannot use this session's challenge
    r = other_session.unsafe("POST", "/auth/passkeys/register", json={"credential": response})
    assert r.status_code == 400 and r.json()["error"] == "invalid_passkey"
    # ... and that attempt used it up (single use, whoever presents it)
    r = c.unsafe("POST", "/auth/passkeys/register", json={"credential": response})
    assert r.status_code == 400
    options = c.unsafe("POST", "/auth/passkeys/register/options").json()["publicKey"]
    response = auth.create(options)
    assert c.unsafe("POST", "/auth/passkeys/register",
                    json={"credential": response}).status_code == 201
    r = c.unsafe("POST", "/auth/passkeys/register", json={"credential": response})
    assert r.status_code == 400  # a replay


@pytest.mark.parametrize("flaw", ["no_uv", "origin", "rp_id", "expired", "garbage"])
def test_a_registration_is_refused(server: Server, flaw: str) -> None:
    c, _, _ = signed_in(server)
    auth = SoftAuthenticator(server.url, uv=flaw != "no_uv")
    options = c.unsafe("POST", "/auth/passkeys/register/options").json()["publicKey"]
    kwargs: dict[str, Any] = {}
    if flaw == "origin":
        kwargs["origin"] = "https://evil.example"
    if flaw == "rp_id":
        kwargs["rp_id"] = "evil.example"
    credential: Any = auth.create(options, **kwargs)
    if flaw == "garbage":
        credential = {**credential, "response": {**credential["response"],
                                                 "attestationObject": "AAAA"}}
    if flaw == "expired":
        server.advance(301)
    try:
        r = c.unsafe("POST", "/auth/passkeys/register", json={"credential": credential})
    finally:
        server.advance(0)
    # (expired: the sign-in is 5 minutes old, fresh enough; the challenge is not)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_passkey"
    assert c.get("/auth/passkeys").json() == {"passkeys": []}


def test_sign_in_with_a_passkey_alone(server: Server) -> None:
    c, username, _ = signed_in(server)
    auth = SoftAuthenticator(server.url)
    add_passkey(server, c, auth)
    fresh = server.client()
    options = login_options(fresh)
    assert options["userVerification"] == "required"
    assert options.get("allowCredentials", []) == []
    assertion = auth.get(options)
    r = passkey_login(fresh, assertion)
    assert r.status_code == 200, r.text
    assert r.json()["user"]["username"] == username
    assert fresh.session_value
    me = fresh.get("/auth/me").json()
    assert me["amr"] == ["hwk", "user", "mfa"]
    # a UV passkey is two factors: it passes mfa step-up
    assert fresh.get("/auth/verify", params={"mfa": "1"}).status_code == 200
    listed = fresh.get("/auth/passkeys").json()["passkeys"]
    assert listed[0]["last_used_at"] is not None
    # the same assertion again: its challenge is used up
    assert passkey_login(server.client(), assertion).status_code == 401


def test_a_synced_passkey_is_swk(server: Server) -> None:
    c, _, _ = signed_in(server)
    auth = SoftAuthenticator(server.url, backup_eligible=True, counting=False)
    key = add_passkey(server, c, auth)
    assert key["backup_eligible"] is True
    for _ in range(2):  # a counter that stays 0 is allowed (synced passkeys have none)
        fresh = server.client()
        assert passkey_login(fresh, auth.get(login_options(fresh))).status_code == 200
        assert fresh.get("/auth/me").json()["amr"] == ["swk", "user", "mfa"]


def test_sign_in_options_cost_no_write(server: Server) -> None:
    """/login asks for options on every view (autofill): they are stateless (MAC'd), so a
    flood of page views writes nothing; the challenge is recorded when used, once."""
    if not str(server.settings["database_url"]).startswith("sqlite"):
        pytest.skip("read through SQLite's file")

    def rows() -> int:
        db = sqlite3.connect(server.db_path)
        try:
            return int(db.execute("SELECT count(*) FROM passkey_challenges").fetchone()[0])
        finally:
            db.close()
    c = server.client()
    before = rows()
    for _ in range(20):
        login_options(c)
    assert rows() == before


@pytest.mark.parametrize("flaw", ["no_uv", "origin", "counter_back", "counter_same",
                                  "user_handle", "expired", "unknown"])
def test_a_passkey_sign_in_is_refused(server: Server, flaw: str) -> None:
    c, _, _ = signed_in(server)
    auth = SoftAuthenticator(server.url)
    add_passkey(server, c, auth)
    fresh = server.client()
    assert passkey_login(fresh, auth.get(login_options(fresh), counter=5)).status_code == 200
    fresh = server.client()
    options = login_options(fresh)
    kwargs: dict[str, Any] = {}
    if flaw == "no_uv":
        auth.uv = False
    if flaw == "origin":
        kwargs["origin"] = "http://localhost:1"
    if flaw == "counter_back":
        kwargs["counter"] = 3  # a cloned authenticator
    if flaw == "counter_same":
        kwargs["counter"] = 5
    if flaw == "user_handle":
        kwargs["user_handle"] = b"0" * 32
    assertion = auth.get(options, **kwargs)
    if flaw == "unknown":
        assertion["id"] = assertion["rawId"] = "A" * 43
    if flaw == "expired":
        server.advance(301)
    try:
        r = passkey_login(fresh, assertion)
    finally:
        server.advance(0)
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_passkey"
    assert fresh.session_value is None
    # a counter that went backwards did not move the stored one: the next real use works
    fresh = server.client()
    auth.uv = True
    assert passkey_login(fresh, auth.get(login_options(fresh), counter=6)).status_code == 200


def test_a_passkey_as_the_second_factor(server: Server) -> None:
    username, password, _secret, _ = enrolled(server)
    c = server.client()
    assert c.post("/auth/login/mfa", json={"mfa_token": "x" * 43}).status_code == 400
    # add a passkey (a fresh session signed in with the app's code... or here: the API
    # needs only a recent sign-in, which the second step gives)
    r = c.login(username, password)
    assert r.status_code == 401
    body = r.json()
    assert body["methods"] == ["totp", "recovery_code"]  # no passkey yet
    c.close()
    c = server.client()
    from tests.blackbox.test_mfa import code_at

    r = c.login(username, password)
    r = c.post("/auth/login/mfa", json={"mfa_token": r.json()["mfa_token"],
                                        "code": code_at(server, _secret, 1)})
    assert r.status_code == 200, r.text
    c.csrf = r.json()["csrf_token"]
    auth = SoftAuthenticator(server.url)
    add_passkey(server, c, auth, "Key")

    # the session flow
    s = server.client()
    r = s.login(username, password)
    assert r.status_code == 401 and r.json()["methods"] == ["totp", "recovery_code", "passkey"]
    token = r.json()["mfa_token"]
    r = s.post("/auth/passkeys/mfa/options", json={"mfa_token": token},
               headers={"Origin": s.origin})
    assert r.status_code == 200, r.text
    options = r.json()["publicKey"]
    assert [d["id"] for d in options["allowCredentials"]] == [
        base64.urlsafe_b64encode(auth.credentials[0].credential_id).rstrip(b"=").decode()]
    assertion = auth.get(options)
    # the challenge is bound to its mfa_token: another pending sign-in cannot use it
    other = server.client().login(username, password).json()["mfa_token"]
    r = s.post("/auth/login/mfa", json={"mfa_token": other, "passkey": assertion})
    assert r.status_code == 400 and r.json()["error"] == "invalid_passkey"
    options = s.post("/auth/passkeys/mfa/options", json={"mfa_token": token},
                     headers={"Origin": s.origin}).json()["publicKey"]
    r = s.post("/auth/login/mfa", json={"mfa_token": token, "passkey": auth.get(options)})
    assert r.status_code == 200, r.text
    assert s.get("/auth/me").json()["amr"] == ["pwd", "hwk", "user", "mfa"]
    # both a code and a passkey, or neither: refused
    assert s.post("/auth/login/mfa", json={"mfa_token": token, "code": "1",
                                           "passkey": {}}).status_code == 400

    # the token flow: the mfa grant takes the assertion (a JSON string) instead of a code
    r = s.token(username, password)
    assert r.status_code == 403 and r.json()["error"] == "mfa_required"
    token = r.json()["mfa_token"]
    options = s.post("/auth/passkeys/mfa/options", json={"mfa_token": token},
                     headers={"Origin": s.origin}).json()["publicKey"]
    r = s.post("/auth/token", data={"grant_type": MFA_GRANT, "mfa_token": token,
                                    "passkey": json.dumps(auth.get(options))})
    assert r.status_code == 200, r.text
    claims = claims_of(server.signed_token(r.json()["access_token"]))
    assert claims["amr"] == ["pwd", "hwk", "user", "mfa"]


def test_another_users_passkey_is_no_second_factor(server: Server) -> None:
    username, password, _, _ = enrolled(server)
    mallory, _, _ = signed_in(server)
    auth = SoftAuthenticator(server.url)
    add_passkey(server, mallory, auth)
    s = server.client()
    token = s.login(username, password).json()["mfa_token"]
    # the victim has no passkey: no options to ask for
    r = s.post("/auth/passkeys/mfa/options", json={"mfa_token": token},
               headers={"Origin": s.origin})
    assert r.status_code == 404
    # mallory's own login challenge, signed by mallory's passkey, offered as the victim's
    # second factor
    assertion = auth.get(login_options(s))
    r = s.post("/auth/login/mfa", json={"mfa_token": token, "passkey": assertion})
    assert r.status_code == 400 and r.json()["error"] == "invalid_passkey"
    assert s.session_value is None


def test_a_database_holds_no_usable_challenge(server: Server) -> None:
    if not str(server.settings["database_url"]).startswith("sqlite"):
        pytest.skip("read through SQLite's file")
    c, _, _ = signed_in(server)
    options = c.unsafe("POST", "/auth/passkeys/register/options").json()["publicKey"]
    db = sqlite3.connect(server.db_path)
    try:
        rows = db.execute("SELECT challenge_hash FROM passkey_challenges").fetchall()
    finally:
        db.close()
    assert rows and all(options["challenge"] not in r[0] for r in rows)
    assert all(len(r[0]) == 64 for r in rows)


def test_passkey_routes_refuse_bad_input(server: Server) -> None:
    c, _, _ = signed_in(server)
    for body in ({"credential": "not json"}, {"credential": []}, {"credential": {}},
                 {"credential": {"id": 1}}, {"credential": {}, "extra": 1}):
        r = c.unsafe("POST", "/auth/passkeys/register", json=body)
        assert 400 <= r.status_code < 500, (body, r.text)
    fresh = server.client()
    for body in ({"credential": {"response": {"clientDataJSON": "!!"}}},
                 {"credential": {}, "remember": "yes"}, {}):
        r = fresh.post("/auth/passkeys/login", json=body, headers={"Origin": fresh.origin})
        assert 400 <= r.status_code < 500, (body, r.text)
    # a challenge that is not the server's (no MAC) or a forged one
    auth = SoftAuthenticator(server.url)
    add_passkey(server, c, auth)
    options = login_options(fresh)
    raw = base64.urlsafe_b64decode(options["challenge"] + "==")
    for forged in (raw[:24] + bytes(24), raw[:-1], b"\0" * 48):
        r = passkey_login(fresh, auth.get({**options, "challenge": base64.urlsafe_b64encode(
            forged).rstrip(b"=").decode()}))
        assert r.status_code == 401, r.text
    assert passkey_login(fresh, auth.get(options)).status_code == 200
    r = fresh.post("/auth/passkeys/mfa/options", json={"mfa_token": "x" * 43},
                   headers={"Origin": fresh.origin})
    assert r.status_code == 401


def test_only_the_passkey_pages_allow_a_script_and_only_their_own(server: Server) -> None:
    c = server.client()
    login = c.get("/login").headers["content-security-policy"]
    assert "script-src 'self'" in login and "connect-src 'self'" in login
    assert "unsafe-inline" not in login and "default-src 'none'" in login
    assert "script-src" not in c.get("/forgot-password").headers["content-security-policy"]
    js = c.get("/static/passkeys.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "navigator.credentials" in js.text


def test_the_passkey_grant_gives_tokens_without_a_password(server: Server) -> None:
    c, username, password = signed_in(server)
    auth = SoftAuthenticator(server.url)
    add_passkey(server, c, auth)
    t = server.client()
    assertion = json.dumps(auth.get(login_options(t)))
    r = t.post("/auth/token", data={"grant_type": "urn:authgate:grant-type:passkey",
                                    "passkey": assertion})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["refresh_token"]
    claims = claims_of(server.signed_token(body["access_token"]))
    assert claims["amr"] == ["hwk", "user", "mfa"]
    me = t.get("/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.json()["username"] == username
    # the same assertion again: OAuth's invalid_grant
    r = t.post("/auth/token", data={"grant_type": "urn:authgate:grant-type:passkey",
                                    "passkey": assertion})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = t.post("/auth/token", data={"grant_type": "urn:authgate:grant-type:passkey"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = t.post("/auth/token", data={"grant_type": "password", "username": username,
                                    "password": password, "passkey": assertion})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_an_operator_mfa_reset_removes_the_passkeys_too(server: Server) -> None:
    """`users mfa-reset` is what an operator runs for a lost device: a passkey on it would
    still sign in without a password, so the passkeys go with the app; the user signs in
    with the password and sees none left."""
    c, username, password = signed_in(server)
    auth = SoftAuthenticator(server.url)
    add_passkey(server, c, auth, name="lost phone")
    done = server.cli("users", "mfa-reset", username)
    assert done.returncode == 0, done.stderr
    assert passkey_login(server.client(), auth.get(login_options(server.client()))
                         ).status_code == 401
    again = server.client()
    assert again.login(username, password).status_code == 200
    assert again.get("/auth/passkeys").json()["passkeys"] == []


def test_deleting_a_passkey_ends_the_other_sign_ins(server: Server) -> None:
    """A passkey on a lost device signs in alone. When the owner deletes it, the sessions
    and token families it may have made end with every other one of the user's (as after
    a password change); the owner's own session stays."""
    owner, username, password = signed_in(server)
    auth = SoftAuthenticator(server.url)
    key = add_passkey(server, owner, auth, name="lost phone")
    thief = server.client()
    assert passkey_login(thief, auth.get(login_options(thief))).status_code == 200
    laptop, _, _ = signed_in(server, username, password)
    tokens = server.client().post("/auth/token", data={
        "grant_type": "password", "username": username, "password": password}).json()
    assert thief.get("/auth/me").status_code == 200
    assert owner.unsafe("DELETE", f"/auth/passkeys/{key['id']}").status_code == 204
    assert owner.get("/auth/me").status_code == 200
    for other in (thief, laptop):
        assert eventually(lambda c=other: c.get("/auth/me").status_code == 401, within=5)
    refreshed = server.client().post("/auth/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 400, refreshed.text
