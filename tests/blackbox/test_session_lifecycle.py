"""Session lifecycle: idle and absolute timeouts, remember-me, logout (SESS-07, 13..16, 23).

The module's server runs the contract's defaults (idle 30 min, absolute 12 h, remember-me
30 days, last-seen written at most every 60 s); ``short`` runs second-scale settings.
Time is moved with the server's injected clock, never slept.
"""

from __future__ import annotations

import pytest

from tests.blackbox.conftest import TUNED
from tests.blackbox.support import (
    me_status,
    register,
    session_cookie_attrs,
    signed_in,
)
from tests.conftest import Server
from tests.helpers import cookie_attrs

# The contract suite: run on SQLite and on PostgreSQL + Redis (tests/conftest.py).
ALL_BACKENDS = True

MIN = 60
HOUR = 3600
DAY = 24 * HOUR


@pytest.fixture(scope="module")
def short(tuned: Server) -> Server:
    """SESSION_IDLE_TTL=90, SESSION_ABSOLUTE_TTL=600, REMEMBER_ME_TTL=3000, and the default
    SESSION_TOUCH_INTERVAL (60 s) on purpose: activity must still count."""
    assert TUNED["session_idle_ttl"] == 90 and TUNED["session_absolute_ttl"] == 600
    assert TUNED["remember_me_ttl"] == 3000
    return tuned


def test_sess_15_idle_timeout_default_30_minutes(server: Server) -> None:
    c, _, _ = signed_in(server)
    server.advance(29 * MIN)
    assert me_status(c) == 200
    server.advance(29 * MIN)  # 58 min after login, 29 after the last request
    assert me_status(c) == 200
    server.advance(30 * MIN + 5)
    assert me_status(c) == 401


def test_sess_15_idle_timeout_enforced_without_activity(server: Server) -> None:
    c, _, _ = signed_in(server)
    other, _, _ = signed_in(server)
    server.advance(31 * MIN)
    assert me_status(c) == 401
    assert me_status(other) == 401


def test_sess_16_absolute_timeout_default_12_hours(server: Server) -> None:
    c, _, _ = signed_in(server)
    elapsed = 0
    while elapsed + 25 * MIN < 12 * HOUR:
        server.advance(25 * MIN)
        elapsed += 25 * MIN
        assert me_status(c) == 200, elapsed
    server.advance(12 * HOUR - elapsed + 5)
    assert me_status(c) == 401


def test_remember_me_persistent_cookie_default_30_days(server: Server) -> None:
    username, password, _ = register(server)
    c = server.client()
    r = c.login(username, password, remember=True)
    assert r.status_code == 200, r.text
    attrs = session_cookie_attrs(r, "__Host-authgate")
    assert attrs.get("max-age") == str(30 * DAY)
    assert {"secure", "httponly"} <= set(attrs)
    assert attrs.get("samesite", "").lower() == "lax" and attrs.get("path") == "/"
    server.advance(2 * HOUR)  # far past the idle timeout
    assert me_status(c) == 200
    server.advance(13 * HOUR)  # past the non-remembered absolute timeout too
    assert me_status(c) == 200
    server.advance(30 * DAY - 15 * HOUR + 10)
    assert me_status(c) == 401


def test_sess_15_idle_ttl_setting_and_activity_resets_it(short: Server) -> None:
    c, _, _ = signed_in(short)
    short.advance(80)
    assert me_status(c) == 200
    short.advance(80)  # 160 s after login, 80 after the last request
    assert me_status(c) == 200
    short.advance(91)
    assert me_status(c) == 401


def test_sess_15_every_request_resets_the_idle_timer(short: Server) -> None:
    c, _, _ = signed_in(short)
    for _ in range(3):
        short.advance(59)
        assert me_status(c) == 200


def test_sess_16_absolute_ttl_setting_not_extended_by_activity(short: Server) -> None:
    c, _, _ = signed_in(short)
    for _ in range(7):
        short.advance(85)
        assert me_status(c) == 200
    short.advance(600 - 7 * 85 + 1)
    assert me_status(c) == 401


def test_remember_me_ttl_setting(short: Server) -> None:
    username, password, _ = register(short)
    c = short.client()
    r = c.login(username, password, remember=True)
    assert r.status_code == 200
    assert session_cookie_attrs(r, "__Host-authgate").get("max-age") == "3000"
    short.advance(700)  # past both the idle (90) and absolute (600) settings
    assert me_status(c) == 200
    short.advance(3000 - 700 + 1)
    assert me_status(c) == 401


def test_sess_07_expiry_enforced_server_side_whatever_the_cookie(short: Server) -> None:
    c, _, _ = signed_in(short)
    value = c.session_value
    short.advance(91)
    # The client still holds (and re-sends) the cookie: the server must refuse it.
    assert value and c.session_value == value
    r = c.get("/auth/me")
    assert r.status_code == 401
    assert r.headers.get("www-authenticate", "").startswith("Bearer")


def test_sess_13_logout_destroys_session_and_clears_cookie(server: Server) -> None:
    c, _, _ = signed_in(server)
    old = c.session_value
    assert old
    r = c.unsafe("POST", "/auth/logout")
    assert r.status_code == 204
    cleared = session_cookie_attrs(r, "__Host-authgate")
    assert cleared["value"] == ""
    assert cleared.get("max-age") == "0" or "1970" in cleared.get("expires", "")
    assert {"secure", "httponly"} <= set(cleared) and cleared.get("path") == "/"
    assert me_status(c, old) == 401
    again = server.client()
    again.csrf = c.csrf
    again.jar[again.session_cookie] = old
    assert again.unsafe("POST", "/auth/logout").status_code == 401


def test_sess_23_logout_clears_the_credential_cookies(server: Server) -> None:
    """Logout clears each credential cookie by name, not with ``Clear-Site-Data:
    "cookies"``, which would also wipe the device cookie (login throttling of a known
    browser) and every other cookie of the site."""
    c, _, _ = signed_in(server)
    device = "__Host-authgate-device"
    assert c.jar.get(device)
    r = c.unsafe("POST", "/auth/logout")
    assert r.status_code == 204
    assert '"cookies"' not in r.headers.get("clear-site-data", "")
    assert session_cookie_attrs(r, c.session_cookie)["value"] == ""
    assert cookie_attrs(r, device) is None
    assert c.jar.get(device)
    assert "no-store" in r.headers.get("cache-control", "")


def test_sess_14_get_logout_is_405_and_does_nothing(server: Server) -> None:
    c, _, _ = signed_in(server)
    r = c.get("/auth/logout")
    assert r.status_code == 405
    assert not r.headers.get_list("set-cookie")
    assert me_status(c) == 200


def test_logout_of_one_session_leaves_the_others(server: Server) -> None:
    a, username, password = signed_in(server)
    b, _, _ = signed_in(server, username, password)
    assert a.unsafe("POST", "/auth/logout").status_code == 204
    assert me_status(b) == 200


def test_expired_sessions_leave_the_listing(server: Server) -> None:
    keeper, username, password = signed_in(server, remember=True)
    brief, _, _ = signed_in(server, username, password)
    assert len(keeper.get("/auth/sessions").json()) == 2
    server.advance(31 * MIN)
    assert me_status(brief) == 401
    [entry] = keeper.get("/auth/sessions").json()
    assert entry["current"] is True


def test_every_refused_session_gets_the_same_401(server: Server) -> None:
    expired, _, _ = signed_in(server)
    logged_out, _, _ = signed_in(server)
    gone = logged_out.session_value
    assert logged_out.unsafe("POST", "/auth/logout").status_code == 204
    server.advance(31 * MIN)
    bodies = {
        "expired": expired.get("/auth/me"),
        "logged-out": logged_out.get("/auth/me", headers={
            "Cookie": f"__Host-authgate={gone}"}),
        "unknown": server.client().get("/auth/me", headers={
            "Cookie": "__Host-authgate=" + "A" * 43}),
        "none": server.client().get("/auth/me"),
    }
    for r in bodies.values():
        assert r.status_code == 401
        assert r.headers.get("www-authenticate") == bodies["none"].headers.get(
            "www-authenticate")
    assert len({r.content for r in bodies.values()}) == 1, {
        k: r.text for k, r in bodies.items()}
