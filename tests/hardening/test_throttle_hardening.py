"""Hardening of login throttling and the unauthenticated writes (issue 9: h05, h08, h10,
h11). Each test failed on the code before its fix."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from authgate.clock import ManualClock
from authgate.errors import InvalidCredentials, Throttled
from tests.blackbox.support import assert_error, new_name, new_password, register
from tests.conftest import Server, server_class
from tests.helpers import cookie_attrs
from tests.unit import conftest as unit
from tests.unit.conftest import EngineFactory

# The black-box tests on the module's ``server``: SQLite and PostgreSQL + Redis.
ALL_BACKENDS = True

THRESHOLD = 5  # ACCOUNT_LOCK_THRESHOLD's default
DEVICE = "__Host-authgate-device"
PW = "a fine unit-test passphrase 42"

# The in-process engine fixtures of tests/unit (SQLite, PostgreSQL, PostgreSQL + Redis).
backend, clock, make_engine = unit.backend, unit.clock, unit.make_engine


def login(server: Server, username: str, password: str, *, device: str | None = None,
          xff: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": xff} if xff else {}
    if device is not None:
        headers["Cookie"] = f"{DEVICE}={device}"
    with httpx.Client(base_url=server.url, timeout=60) as c:
        return c.post("/auth/login", json={"username": username, "password": password},
                      headers=headers)


def device_of(response: httpx.Response) -> str:
    attrs = cookie_attrs(response, DEVICE)
    assert attrs is not None and attrs["value"], response.headers.get_list("set-cookie")
    return attrs["value"]


def lock_out(server: Server, username: str, at_least: int = 60) -> None:
    """Wrong guesses from browsers the account has never seen, until it is locked for at
    least ``at_least`` seconds (the first lock, 2 s, is too short to test against)."""
    for i in range(THRESHOLD):
        assert_error(login(server, username, f"wrong guess {i} from elsewhere"), 401)
    while True:
        r = login(server, username, "one more wrong guess")
        assert_error(r, 429)
        wait = int(r.headers["retry-after"])
        if wait >= at_least:
            return
        server.advance(wait)
        assert_error(login(server, username, "the next wrong guess"), 401)


# -- h05: reservations before hashing; device cookies; IPv6 /64 ---------------------------


def test_h05_parallel_burst_evaluates_at_most_the_threshold(server: Server) -> None:
    username, password, _ = register(server)
    owner = server.client()  # the owner's browser, known to the account
    assert owner.login(username, password).status_code == 200
    burst = 20
    barrier = threading.Barrier(burst)

    def guess(i: int) -> int:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            barrier.wait(timeout=30)
            return c.post("/auth/login", json={"username": username,
                                               "password": f"parallel guess {i}"}).status_code

    with ThreadPoolExecutor(burst) as pool:
        statuses = sorted(pool.map(guess, range(burst)))
    assert statuses.count(401) == THRESHOLD, statuses
    assert statuses.count(429) == burst - THRESHOLD, statuses
    # The owner's known browser is not locked out.
    assert owner.login(username, password).status_code == 200
    owner.close()


async def test_h05_parallel_reservations_in_process(make_engine: EngineFactory) -> None:
    engine = await make_engine()
    await engine.users.create_user("parallel-pat", PW)
    results = await asyncio.gather(
        *(engine.signin.check_password("parallel-pat", f"guess {i} wrong", f"10.0.0.{i}")
          for i in range(20)), return_exceptions=True)
    kinds = [type(r).__name__ for r in results]
    assert kinds.count("InvalidCredentials") == THRESHOLD, kinds
    assert kinds.count("Throttled") == 20 - THRESHOLD, kinds


def test_h05_device_cookie_bypasses_the_lock_only_for_its_owner(server: Server) -> None:
    username, password, _ = register(server)
    other, other_password, _ = register(server)
    browser = server.client()  # the owner's browser, known to the account
    assert browser.login(username, password).status_code == 200
    elsewhere = login(server, other, other_password)  # another user's browser
    lock_out(server, username)
    # The owner's known browser signs in while the account is locked for everyone else.
    r = browser.login(username, password)
    assert r.status_code == 200, r.text
    browser.close()
    assert_error(login(server, username, password), 429)
    # Not a bypass: no cookie, a forged one, a tampered one, another user's.
    owner, stranger = browser.jar[DEVICE], device_of(elsewhere)
    nonce, _, sig = owner.partition(".")
    for fake in (None, "forged.cookie", f"{nonce}.{sig[::-1]}", f"{nonce}x.{sig}", stranger):
        assert_error(login(server, username, password, device=fake), 429)
    # A stolen device cookie is throttled on its own counter, the same schedule.
    for i in range(THRESHOLD):
        assert_error(login(server, username, f"thief guess {i}", device=owner), 401)
    assert_error(login(server, username, password, device=owner), 429)


def test_h05_every_sign_in_sets_a_device_cookie(server: Server) -> None:
    username, password, _ = register(server)
    c = server.client()
    token = c.post("/auth/token", data={"grant_type": "password", "username": username,
                                        "password": password})
    assert token.status_code == 200, token.text
    api = c.login(username, password)
    assert api.status_code == 200
    form = c.get("/login")
    nonce_token = form.text.split('name="form_token" value="', 1)[1].split('"', 1)[0]
    page = c.post("/login", data={"form_token": nonce_token, "username": username,
                                  "password": password}, headers={"Origin": c.origin})
    assert page.status_code == 303, page.text
    values = set()
    for r in (token, api, page):
        attrs = cookie_attrs(r, DEVICE)
        assert attrs is not None, r.headers.get_list("set-cookie")
        assert {"secure", "httponly"} <= set(attrs)
        assert attrs["samesite"].lower() == "strict" and attrs["path"] == "/"
        assert "domain" not in attrs
        assert int(attrs["max-age"]) >= 365 * 24 * 3600
        values.add(attrs["value"])
    assert len(values) == 3
    # Nothing fails a sign-in: a failure sets no device cookie.
    assert cookie_attrs(login(server, username, "not the password"), DEVICE) is None


def test_h05_device_cookie_name_without_secure_cookies(request: pytest.FixtureRequest,
                                                       tmp_path: Path) -> None:
    srv = server_class(request)(tmp_path, {"cookie_secure": False}).start()
    try:
        username, password, _ = register(srv)
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            r = c.post("/auth/login", json={"username": username, "password": password})
        attrs = cookie_attrs(r, "authgate-device")
        assert attrs is not None and "secure" not in attrs, r.headers.get_list("set-cookie")
        assert cookie_attrs(r, DEVICE) is None
    finally:
        srv.stop()


def test_h05_ipv6_clients_are_counted_per_64(proxied: Server) -> None:
    # ip_failure_limit=3 on this server: three failures anywhere in one /64 ...
    for host in ("2001:db8:aa:1::1", "2001:db8:aa:1::2", "2001:db8:aa:1:ffff:1:2:3"):
        assert_error(login(proxied, new_name("v6"), "wrong password v6", xff=host), 401)
    # ... throttle the whole /64, whatever address in it the client picks next ...
    assert_error(login(proxied, new_name("v6"), "wrong password v6",
                       xff="2001:db8:aa:1:dead:beef:0:1"), 429)
    # ... and not the neighbouring /64.
    assert_error(login(proxied, new_name("v6"), "wrong password v6",
                       xff="2001:db8:aa:2::1"), 401)


def test_h05_address_key() -> None:
    from authgate.throttle import address_key

    assert address_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert address_key("2001:DB8:1:2::9") == address_key("2001:db8:1:2:ffff::")
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("203.0.113.9") == "203.0.113.9"
    assert address_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert address_key("") == ""


# -- h10: the database throttle keeps the count while the attack goes on --------------


async def test_h10_purge_keeps_the_count_the_lock_schedule_needs(
        make_engine: EngineFactory, clock: ManualClock) -> None:
    engine = await make_engine(account_lock_threshold=3)
    await engine.users.create_user("slow-sam", PW)

    async def wrong() -> None:
        with pytest.raises(InvalidCredentials):
            await engine.signin.check_password("slow-sam", "a wrong password", "198.51.100.1")

    async def lock() -> int:
        with pytest.raises(Throttled) as locked:
            await engine.signin.check_password("slow-sam", PW, "198.51.100.2")
        return locked.value.retry_after

    for _ in range(3):
        await wrong()
    first = await lock()  # 2 s
    clock.advance(first)
    await wrong()
    second = await lock()  # 4 s
    # The attacker pauses past the lock and 15 minutes; the housekeeping purge runs.
    clock.advance(second + 15 * 60 + 1)
    await engine.purge()
    await wrong()
    assert await lock() > second  # still counting: 8 s, not a fresh count of one
    if engine.redis is None:  # (Redis: the key's TTL of a day, in real time)
        # A day without failures forgets the count.
        clock.advance(24 * 3600 + 60)
        await engine.purge()
        await wrong()
        await engine.signin.check_password("slow-sam", PW, "198.51.100.3")


async def test_purge_still_forgets_finished_windows(make_engine: EngineFactory,
                                                  clock: ManualClock) -> None:
    engine = await make_engine(ip_failure_limit=2)
    with pytest.raises(InvalidCredentials):
        await engine.signin.check_password("nobody-nic", "a wrong password", "198.51.100.9")
    clock.advance(15 * 60 + 1)
    counts = await engine.purge()
    if engine.redis is None:
        assert counts["throttle"] >= 1  # the finished address window


# -- h11: registration and revocation are limited per address -------------------------


def test_h11_registration_is_limited_per_address(proxied: Server) -> None:
    """The default: 20 registrations per address per 10 minutes, then 429 + Retry-After."""

    def register_from(xff: str) -> httpx.Response:
        with httpx.Client(base_url=proxied.url, timeout=60) as c:
            return c.post("/auth/register", headers={"X-Forwarded-For": xff},
                          json={"username": new_name("reg"), "password": new_password()})

    for _ in range(20):
        assert register_from("203.0.113.20").status_code == 201
    r = register_from("203.0.113.20")
    assert_error(r, 429, "too_many_requests")
    assert 1 <= int(r.headers["retry-after"]) <= 600
    assert register_from("203.0.113.21").status_code == 201  # another address
    proxied.advance(601)
    assert register_from("203.0.113.20").status_code == 201  # the window ended


def test_h11_revocation_is_limited_per_address(proxied: Server) -> None:
    """RFC 7009 revocation needs no authentication: 300 per address per 10 minutes."""

    def revoke_from(xff: str, c: httpx.Client) -> httpx.Response:
        return c.post("/auth/revoke", headers={"X-Forwarded-For": xff},
                      data={"token": "not-a-token-but-well-formed-enough"})

    with httpx.Client(base_url=proxied.url, timeout=60) as c:
        for _ in range(300):
            assert revoke_from("203.0.113.30", c).status_code == 200
        r = revoke_from("203.0.113.30", c)
        assert r.status_code == 429, r.text
        assert set(r.json()) == {"error", "error_description"}  # the OAuth error form
        assert int(r.headers["retry-after"]) >= 1
        assert revoke_from("203.0.113.31", c).status_code == 200


async def test_h11_limits_count_on_every_backend(make_engine: EngineFactory) -> None:
    engine = await make_engine(registration_limit=2, revoke_limit=2)
    for i in range(2):
        await engine.users.register(f"reg-{i}-rita", PW, ip="2001:db8:5::1")
    with pytest.raises(Throttled):
        await engine.users.register("reg-x-rita", PW, ip="2001:db8:5::2")  # the same /64
    await engine.users.register("reg-y-rita", PW, ip="2001:db8:6::1")
    await engine.users.register("reg-z-rita", PW)  # not from the network: not limited
    for _ in range(2):
        await engine.grants.revoke_token("nothing-to-see-here-at-all", ip="192.0.2.1")
    with pytest.raises(Throttled):
        await engine.grants.revoke_token("nothing-to-see-here-at-all", ip="192.0.2.1")


# -- h08: X-Forwarded-For on several header lines ----------------------------------------


def test_h08_x_forwarded_for_lines_are_combined(proxied: Server) -> None:
    username, password, _ = register(proxied)
    with httpx.Client(base_url=proxied.url, timeout=60) as c:
        # The client writes the first line; the trusted proxy appends a line of its own.
        r = c.post("/auth/login", json={"username": username, "password": password},
                   headers=[("X-Forwarded-For", "6.6.6.6"),
                            ("X-Forwarded-For", "203.0.113.5")])
        assert r.status_code == 200, r.text
        session = cookie_attrs(r, "__Host-authgate")
        assert session is not None
        listed = c.get("/auth/sessions",
                       headers={"Cookie": f"__Host-authgate={session['value']}"})
    [entry] = listed.json()
    assert entry["ip"] == "203.0.113.5"


def test_h08_x_forwarded_for_lines_feed_the_address_throttle(proxied: Server) -> None:
    # ip_failure_limit=3: a client rotating its own line stays in its real bucket.
    for i in range(3):
        with httpx.Client(base_url=proxied.url, timeout=60) as c:
            r = c.post("/auth/login", json={"username": new_name("x"), "password": "wrong!"},
                       headers=[("X-Forwarded-For", f"6.6.{i}.6"),
                                ("X-Forwarded-For", "203.0.113.40")])
        assert_error(r, 401)
    with httpx.Client(base_url=proxied.url, timeout=60) as c:
        r = c.post("/auth/login", json={"username": new_name("x"), "password": "wrong!"},
                   headers=[("X-Forwarded-For", "7.7.7.7"),
                            ("X-Forwarded-For", "203.0.113.40")])
    assert_error(r, 429)


@pytest.fixture(scope="module")
def proxied(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Behind a trusted proxy on 127.0.0.1, a per-address login limit of 3, and the
    default registration and revocation limits (the harness raises them elsewhere)."""
    srv = server_class(request)(tmp_path_factory.mktemp("proxied"),
                 {"trusted_proxies": "127.0.0.1", "ip_failure_limit": 3})
    srv.settings.pop("registration_limit")
    srv.settings.pop("revoke_limit")
    srv.start()
    yield srv
    srv.stop()

