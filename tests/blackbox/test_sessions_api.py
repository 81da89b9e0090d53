"""GET/DELETE /auth/sessions, log out everywhere, the session cap and password change
(contract §2; SESS-12, SESS-17, SESS-19, SESS-20)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.blackbox.conftest import TUNED
from tests.blackbox.support import (
    assert_error,
    cookie_header,
    me_status,
    new_password,
    parse_utc,
    register,
    session_cookie_attrs,
    signed_in,
)
from tests.conftest import Server
from tests.helpers import AuthClient

# The contract suite: run on SQLite and on PostgreSQL + Redis (tests/conftest.py).
ALL_BACKENDS = True
ENCRYPTED_BACKEND = True  # bearer flows once more with TOKEN_ENCRYPTION=true (tests/conftest.py)

FIELDS = {"id", "kind", "created_at", "last_seen_at", "expires_at", "ip", "user_agent",
          "current"}


def listing(client: AuthClient) -> list[dict[str, Any]]:
    r = client.get("/auth/sessions")
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body, list)
    return body


def current_id(client: AuthClient) -> str:
    [entry] = [e for e in listing(client) if e["current"]]
    return str(entry["id"])


def test_sess_19_listing_shape(server: Server) -> None:
    username, password, _ = register(server)
    a = server.client(headers={"User-Agent": "bb-agent-A/1.0"})
    assert a.login(username, password).status_code == 200
    b = server.client(headers={"User-Agent": "bb-agent-B/2.0"})
    assert b.login(username, password).status_code == 200
    tok = server.client(headers={"User-Agent": "bb-agent-T/3.0"}).token(username, password)
    assert tok.status_code == 200, tok.text
    r = a.get("/auth/sessions")
    assert r.status_code == 200
    assert "no-store" in r.headers.get("cache-control", "")
    entries = r.json()
    assert len(entries) == 3, entries
    for e in entries:
        assert set(e) == FIELDS, e
        assert isinstance(e["id"], str) and e["id"]
        created, seen, expires = (parse_utc(e[k]) for k in
                                  ("created_at", "last_seen_at", "expires_at"))
        assert created <= seen < expires
        assert e["ip"] == "127.0.0.1"
        assert isinstance(e["current"], bool)
    by_agent = {e["user_agent"]: e for e in entries}
    assert set(by_agent) == {"bb-agent-A/1.0", "bb-agent-B/2.0", "bb-agent-T/3.0"}
    assert by_agent["bb-agent-A/1.0"]["current"] is True
    assert by_agent["bb-agent-B/2.0"]["current"] is False
    assert by_agent["bb-agent-T/3.0"]["current"] is False
    assert by_agent["bb-agent-A/1.0"]["kind"] == "session"
    assert by_agent["bb-agent-B/2.0"]["kind"] == "session"
    assert by_agent["bb-agent-T/3.0"]["kind"] == "token"
    assert len({e["id"] for e in entries}) == 3
    # No credential in the listing: neither cookie value nor the refresh/access token.
    for secret in (a.session_value, b.session_value, tok.json()["refresh_token"],
                   tok.json()["access_token"]):
        assert secret and secret not in r.text
    # The listing is the caller's own: B sees the same three, current = B.
    assert {e["id"] for e in listing(b)} == {e["id"] for e in entries}
    assert current_id(b) == by_agent["bb-agent-B/2.0"]["id"]


def test_sessions_listing_is_per_user(server: Server) -> None:
    a, _, _ = signed_in(server)
    b, _, _ = signed_in(server)
    assert not {e["id"] for e in listing(a)} & {e["id"] for e in listing(b)}


def test_sessions_listing_needs_authentication(server: Server) -> None:
    r = server.client().get("/auth/sessions")
    assert_error(r, 401)
    assert r.headers.get("www-authenticate", "").startswith("Bearer")


def test_sess_19_delete_one_of_my_sessions(server: Server) -> None:
    a, username, password = signed_in(server)
    b, _, _ = signed_in(server, username, password)
    b_id = current_id(b)
    r = a.unsafe("DELETE", f"/auth/sessions/{b_id}")
    assert r.status_code == 204, r.text
    assert me_status(b) == 401
    assert me_status(a) == 200
    assert b_id not in {e["id"] for e in listing(a)}
    assert_error(a.unsafe("DELETE", f"/auth/sessions/{b_id}"), 404)


def test_sess_19_delete_another_users_session_is_404(server: Server) -> None:
    victim, _, _ = signed_in(server)
    attacker, _, _ = signed_in(server)
    victim_id = current_id(victim)
    r = attacker.unsafe("DELETE", f"/auth/sessions/{victim_id}")
    assert_error(r, 404)
    unknown = attacker.unsafe("DELETE", "/auth/sessions/0123456789abcdef0123456789abcdef")
    assert_error(unknown, 404)
    assert r.json() == unknown.json()  # "not yours" looks exactly like "no such id"
    assert me_status(victim) == 200


def test_delete_my_current_session_ends_it(server: Server) -> None:
    a, _, _ = signed_in(server)
    old = a.session_value
    assert old
    r = a.unsafe("DELETE", f"/auth/sessions/{current_id(a)}")
    assert r.status_code == 204
    assert me_status(a, old) == 401


def test_delete_session_needs_csrf(server: Server) -> None:
    a, username, password = signed_in(server)
    b, _, _ = signed_in(server, username, password)
    r = a.delete(f"/auth/sessions/{current_id(b)}")
    assert_error(r, 403, "csrf")
    assert me_status(b) == 200


def test_logout_everywhere(server: Server) -> None:
    a, username, password = signed_in(server)
    b, _, _ = signed_in(server, username, password)
    tok = server.client().token(username, password).json()
    bearer = {"Authorization": f"Bearer {tok['access_token']}"}
    bystander, _, _ = signed_in(server)
    assert server.client().get("/auth/me", headers=bearer).status_code == 200
    r = a.unsafe("DELETE", "/auth/sessions")
    assert r.status_code == 204
    assert '"cookies"' not in r.headers.get("clear-site-data", "")  # keeps the device cookie
    assert session_cookie_attrs(r, "__Host-authgate")["value"] == ""
    assert me_status(a) == 401
    assert me_status(b) == 401
    assert server.client().get("/auth/me", headers=bearer).status_code == 401
    refresh = server.client().post("/auth/token", data={
        "grant_type": "refresh_token", "refresh_token": tok["refresh_token"]})
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"
    assert me_status(bystander) == 200
    # The user can sign in again afterwards.
    fresh, _, _ = signed_in(server, username, password)
    assert me_status(fresh) == 200
    assert len(listing(fresh)) == 1


def test_logout_everywhere_needs_authentication_and_csrf(server: Server) -> None:
    assert_error(server.client().delete("/auth/sessions"), 401)
    a, _, _ = signed_in(server)
    assert_error(a.delete("/auth/sessions"), 403, "csrf")
    assert me_status(a) == 200


@pytest.fixture(scope="module")
def capped(tuned: Server) -> Server:
    """MAX_SESSIONS_PER_USER=2; idle 90 s and last-seen written every 60 s, so the steps
    below are 31 s apart: every session stays inside its idle timeout."""
    assert TUNED["max_sessions_per_user"] == 2 and TUNED["session_idle_ttl"] == 90
    return tuned


def test_sess_20_max_sessions_evicts_least_recently_used(capped: Server) -> None:
    username, password, _ = register(capped)
    a, _, _ = signed_in(capped, username, password)
    capped.advance(31)
    b, _, _ = signed_in(capped, username, password)
    capped.advance(31)
    assert me_status(a) == 200  # A is now more recently used than B
    capped.advance(31)
    c, _, _ = signed_in(capped, username, password)
    assert me_status(b) == 401
    assert me_status(a) == 200
    assert me_status(c) == 200
    assert len(listing(c)) == 2


def test_sess_20_cap_is_per_user(capped: Server) -> None:
    """Two users each at the cap of 2 (one with a session and a token family, one with two
    sessions): a further sign-in of one evicts only that user's least recently used entry.
    Eviction goes by real recency (the stored last-seen lags by up to 60 s, so the process's
    own record of each session's last request counts)."""
    other, other_pw, _ = register(capped)
    theirs = signed_in(capped, other, other_pw)[0]
    capped.advance(1)
    tok = capped.client().token(other, other_pw).json()
    bearer = {"Authorization": f"Bearer {tok['access_token']}"}

    def their_token_status() -> int:
        return capped.client().get("/auth/me", headers=bearer).status_code

    username, password, _ = register(capped)
    capped.advance(1)
    first = signed_in(capped, username, password)[0]
    capped.advance(1)
    second = signed_in(capped, username, password)[0]
    assert [me_status(c) for c in (theirs, first, second)] == [200, 200, 200]
    assert their_token_status() == 200
    capped.advance(1)
    third = signed_in(capped, username, password)[0]  # past the cap: mine, not theirs, goes
    assert [me_status(c) for c in (first, second, third)] == [401, 200, 200]
    assert len(listing(third)) == 2
    assert me_status(theirs) == 200 and their_token_status() == 200
    assert len(listing(theirs)) == 2
    capped.advance(1)
    again = signed_in(capped, other, other_pw)[0]  # and the other way round
    # Exactly one of their two older entries goes (the least recently used: the token
    # family, last used at its sign-in, since their session was used just now), none of mine.
    assert me_status(again) == 200
    assert sorted([me_status(theirs), their_token_status()]) == [200, 401]
    assert their_token_status() == 401
    assert [me_status(c) for c in (second, third)] == [200, 200]


def test_sess_17_password_change_revokes_others_and_rotates_own(server: Server) -> None:
    a, username, password = signed_in(server, remember=False)
    b, _, _ = signed_in(server, username, password)
    tok = server.client().token(username, password).json()
    old_a = a.session_value
    new = new_password()
    r = a.unsafe("POST", "/auth/password",
                 json={"current_password": password, "new_password": new})
    assert r.status_code == 204, r.text
    attrs = session_cookie_attrs(r, "__Host-authgate")
    assert attrs["value"] and attrs["value"] != old_a
    assert {"secure", "httponly"} <= set(attrs) and attrs.get("path") == "/"
    assert me_status(a, old_a) == 401  # SESS-12: the previous ID is dead
    assert me_status(a) == 200  # the caller continues with the rotated cookie
    assert me_status(b) == 401
    refresh = server.client().post("/auth/token", data={
        "grant_type": "refresh_token", "refresh_token": tok["refresh_token"]})
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"
    bearer = {"Authorization": f"Bearer {tok['access_token']}"}
    assert server.client().get("/auth/me", headers=bearer).status_code == 401
    assert server.client().login(username, password).status_code == 401
    assert server.client().login(username, new).status_code == 200
    # The rotated session keeps working for unsafe requests once it fetches its token.
    me = a.get("/auth/me").json()
    a.csrf = me["csrf_token"]
    assert a.unsafe("POST", "/auth/logout").status_code == 204


def test_password_change_wrong_current_is_403(server: Server) -> None:
    a, username, password = signed_in(server)
    b, _, _ = signed_in(server, username, password)
    r = a.unsafe("POST", "/auth/password",
                 json={"current_password": password + "x", "new_password": new_password()})
    assert_error(r, 403, "invalid_credentials")
    assert me_status(a) == 200 and me_status(b) == 200
    assert server.client().login(username, password).status_code == 200


def test_password_change_policy_is_422(server: Server) -> None:
    a, username, password = signed_in(server)
    for bad in ("short", "passwordpassword"):
        r = a.unsafe("POST", "/auth/password",
                     json={"current_password": password, "new_password": bad})
        assert_error(r, 422)
    assert me_status(a) == 200
    assert server.client().login(username, password).status_code == 200


def test_password_change_needs_session_and_csrf(server: Server) -> None:
    r = server.client().post("/auth/password", json={"current_password": "x" * 12,
                                                     "new_password": new_password()})
    assert_error(r, 401)
    a, username, password = signed_in(server)
    body = {"current_password": password, "new_password": new_password()}
    assert_error(a.post("/auth/password", json=body), 403, "csrf")
    assert server.client().login(username, password).status_code == 200


def test_password_change_unknown_field_is_400(server: Server) -> None:
    a, _, password = signed_in(server)
    r = a.unsafe("POST", "/auth/password", json={
        "current_password": password, "new_password": new_password(), "user_id": "x"})
    assert_error(r, 400)


def test_bearer_cookie_precedence_for_sessions(server: Server) -> None:
    """A request with both a bearer token and a cookie is the bearer's user (§3)."""
    a, _, _ = signed_in(server)
    other_name, other_pw, _ = register(server)
    token = server.client().token(other_name, other_pw).json()["access_token"]
    r = a.get("/auth/me", headers={"Authorization": f"Bearer {token}",
                                   **cookie_header(a, a.session_value or "")})
    assert r.status_code == 200
    assert r.json()["username"] == other_name and r.json()["auth"] == "token"


def test_delete_a_token_family_from_the_listing(server: Server) -> None:
    a, username, password = signed_in(server)
    tok = server.client().token(username, password).json()
    bearer = {"Authorization": f"Bearer {tok['access_token']}"}
    as_token = server.client().get("/auth/sessions", headers=bearer).json()
    [family] = [e for e in as_token if e["kind"] == "token"]
    assert family["current"] is True
    assert [e["current"] for e in as_token if e["kind"] == "session"] == [False]
    assert a.unsafe("DELETE", f"/auth/sessions/{family['id']}").status_code == 204
    assert server.client().get("/auth/me", headers=bearer).status_code == 401
    refresh = server.client().post("/auth/token", data={
        "grant_type": "refresh_token", "refresh_token": tok["refresh_token"]})
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"
    assert me_status(a) == 200


def test_sess_20_cap_counts_token_families_too(capped: Server) -> None:
    username, password, _ = register(capped)
    a, _, _ = signed_in(capped, username, password)
    capped.advance(31)
    tok = capped.client().token(username, password).json()
    capped.advance(31)
    assert me_status(a) == 200
    capped.advance(31)
    b, _, _ = signed_in(capped, username, password)
    refresh = capped.client().post("/auth/token", data={
        "grant_type": "refresh_token", "refresh_token": tok["refresh_token"]})
    assert refresh.status_code == 400
    bearer = {"Authorization": f"Bearer {tok['access_token']}"}
    assert capped.client().get("/auth/me", headers=bearer).status_code == 401
    assert me_status(a) == 200 and me_status(b) == 200
