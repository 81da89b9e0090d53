"""Issue 9, the token items: h07 (token lifetime and key removal), h09 (reuse grace), h13
(scope on refresh), h14 (memory and repeated revokes), h19 (refresh of a revoked family in
cookie mode) and the PostgreSQL deadlock between concurrent refreshes. Each test failed on
the code before its fix."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest

from authgate.clock import ManualClock
from authgate.core.credentials import digest, new_secret
from authgate.engine import Engine
from authgate.errors import InvalidGrant
from authgate.hotstate import BoundedCache
from authgate.models import TokenFamily
from authgate.settings import Settings
from authgate.store.records import Records
from tests.blackbox.support import eventually, register
from tests.conftest import Server
from tests.helpers import AuthClient, cookie_attrs
from tests.tokens.forge import b64u, jbytes, segments
from tests.unit.conftest import _drop_pg, _pg_database

MakeServer = Callable[..., Server]


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def password_grant(client: httpx.Client, username: str, password: str,
                   **extra: Any) -> httpx.Response:
    return client.post("/auth/token", data={"grant_type": "password", "username": username,
                                            "password": password, **extra})


def tokens(client: httpx.Client, username: str, password: str,
           **extra: Any) -> tuple[str, str]:
    r = password_grant(client, username, password, **extra)
    assert r.status_code == 200, r.text
    return r.json()["access_token"], r.json()["refresh_token"]


def refresh(client: httpx.Client, token: str) -> httpx.Response:
    return client.post("/auth/token", data={"grant_type": "refresh_token",
                                            "refresh_token": token})


def me(client: httpx.Client, access: str) -> int:
    return client.get("/auth/me", headers={"Authorization": f"Bearer {access}"}).status_code


def assert_invalid_grant(r: httpx.Response) -> None:
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_grant", r.json()


def db_rows(server: Server, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(server.db_path) as conn:
        return conn.execute(sql, args).fetchall()


# -- h07: token lifetime capped, and cached tokens end with their key --------------------------

def test_h07_token_living_longer_than_ttl_refused(server: Server, api: httpx.Client) -> None:
    """A token signed with the server's own key (read from its database, as a leaked key
    would be) with ``exp`` ten years out is refused: no token outlives ACCESS_TOKEN_TTL."""
    username, password, _ = register(server)
    access, _ = tokens(api, username, password)
    issued = segments(access)[1]
    kid = segments(access)[0]["kid"]
    pem = db_rows(server, "SELECT private_pem FROM signing_keys WHERE kid = ?", kid)[0][0]

    def forged(lifetime: int) -> str:
        now = int(time.time())
        claims = {**issued, "iat": now, "exp": now + lifetime, "jti": uuid.uuid4().hex}
        return jwt.encode(claims, pem, algorithm="EdDSA", headers={"kid": kid, "typ": "at+jwt"})

    assert me(api, forged(900)) == 200  # the forge is right: a normal lifetime passes
    assert me(api, forged(10 * 365 * 24 * 3600)) == 401
    assert me(api, forged(901)) == 401  # the default TTL is 900 s and the leeway 0


def test_h07_cached_token_refused_once_its_key_leaves(make_server: MakeServer) -> None:
    """A token verified (and so cached) once is refused after its key leaves the key ring,
    although it has not expired: the cache must not outlive the key."""
    srv = make_server()
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        username, password, _ = register(srv)
        access, _ = tokens(c, username, password)
        old_kid = segments(access)[0]["kid"]
        assert me(c, access) == 200  # verified and cached
        done = srv.cli("keys", "rotate", "--publish-ahead", "0")
        assert done.returncode == 0, done.stderr
        # The operator drops the old key at once (say it leaked): past its drop time.
        with sqlite3.connect(srv.db_path) as conn:
            conn.execute("UPDATE signing_keys SET drop_after = 1 WHERE kid = ?", (old_kid,))
        # A token naming a key this server does not know makes it reload its keys (at most
        # every 5 s; the periodic reload every 30 s does the same).
        header = b64u(jbytes({"alg": "EdDSA", "kid": "not-a-key", "typ": "at+jwt"}))
        unknown = f"{header}.{b64u(jbytes({'sub': 'x'}))}.{b64u(b'sig')}"

        def old_key_gone() -> bool:
            assert me(c, unknown) == 401
            kids = [k["kid"] for k in c.get("/.well-known/jwks.json").json()["keys"]]
            return old_kid not in kids

        assert eventually(old_key_gone, within=40, step=0.5)
        assert me(c, access) == 401


# -- h09: a grace replay cannot fork a second branch -------------------------------------------

def test_h09_grace_replay_after_child_used_is_reuse(make_server: MakeServer) -> None:
    srv = make_server(refresh_reuse_grace=30)
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        username, password, _ = register(srv)
        _, rt1 = tokens(c, username, password)
        # The lost race the grace exists for still works: RT1 again before RT2 is used.
        first = refresh(c, rt1)
        assert first.status_code == 200, first.text
        again = refresh(c, rt1)
        assert again.status_code == 200, again.text
        # The client goes on: RT2 -> RT3 (using a child of RT1).
        rt2 = first.json()["refresh_token"]
        r3 = refresh(c, rt2)
        assert r3.status_code == 200, r3.text
        at3, rt3 = r3.json()["access_token"], r3.json()["refresh_token"]
        # A thief replays RT1 within the 30 s: a child of RT1 was used, so this is reuse.
        assert_invalid_grant(refresh(c, rt1))
        # ... and reuse kills the family: no branch lives on, the client's included.
        assert_invalid_grant(refresh(c, rt3))
        assert me(c, at3) == 401


def test_h09_cookie_mode_two_tabs_race_within_default_grace(server: Server) -> None:
    """Cookie mode: the default COOKIE_REFRESH_REUSE_GRACE (10 s) lets the tab that lost the
    race present the same refresh cookie again; once a child was used it is reuse."""
    username, password, _ = register(server)
    c = AuthClient(server.url, server.settings)
    r = c.post("/auth/token", data={"grant_type": "password", "username": username,
                                    "password": password, "cookie": "1"})
    assert r.status_code == 200, r.text
    csrf = r.json()["csrf_token"]
    rt1 = c.jar[c.refresh_cookie]
    headers = {"X-CSRF-Token": csrf, "Origin": server.url}

    def cookie_refresh(value: str) -> httpx.Response:
        return c.post("/auth/token", data={"grant_type": "refresh_token"},
                      headers={**headers, "Cookie": f"{c.refresh_cookie}={value}"})

    tab1 = cookie_refresh(rt1)
    assert tab1.status_code == 200, tab1.text
    tab2 = cookie_refresh(rt1)  # the other tab, same cookie, a moment later
    assert tab2.status_code == 200, tab2.text
    rt2 = cookie_attrs(tab2, c.refresh_cookie)
    assert rt2 is not None
    r = cookie_refresh(rt2["value"])
    assert r.status_code == 200, r.text
    assert_invalid_grant(cookie_refresh(rt1))  # a child was used: reuse
    # body-mode refresh tokens keep REFRESH_REUSE_GRACE (default 0): a replay is reuse
    _, body_rt = tokens(c, username, password)
    assert refresh(c, body_rt).status_code == 200
    assert_invalid_grant(refresh(c, body_rt))
    c.close()


# -- h13: a refresh never widens the scope -----------------------------------------------------

def test_h13_empty_granted_scope_stays_empty_on_refresh(server: Server,
                                                        api: httpx.Client) -> None:
    username, password = server.new_user("admin", roles=("admin",))
    r = password_grant(api, username, password, scope="profile")
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == ""
    refreshed = refresh(api, r.json()["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["scope"] == ""
    assert segments(refreshed.json()["access_token"])[1]["scope"] == ""
    check = api.get("/auth/verify", params={"scope": "admin"},
                    headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"})
    assert check.status_code == 403
    # a narrowed grant stays narrowed too
    full = password_grant(api, username, password)
    assert full.json()["scope"] == "admin"
    assert refresh(api, full.json()["refresh_token"]).json()["scope"] == "admin"


# -- h14: memory bounded by bytes; a repeated revoke writes nothing ----------------------------

def test_h14_bounded_cache_by_bytes() -> None:
    cache: BoundedCache[str, str] = BoundedCache(100, max_bytes=1000,
                                                 size=lambda k, v: len(k) + len(v))
    for i in range(10):
        cache.put(f"k{i}", "x" * 98)  # 100 bytes each: exactly full
    assert len(cache) == 10 and cache.bytes == 1000
    assert cache.get("k0") is not None  # k0 is now the most recently used
    cache.put("big", "y" * 297)  # 300 bytes: the three least recently used go
    assert cache.bytes <= 1000
    assert "k0" in cache and "big" in cache
    assert all(f"k{i}" not in cache for i in (1, 2, 3)) and "k4" in cache
    cache.put("big", "z")  # replacing an entry accounts for its new size
    assert cache.bytes == sum(len(k) + 98 for k in [f"k{i}" for i in (0, *range(4, 10))]) + 4
    cache.put("huge", "h" * 5000)  # larger than the whole budget: not kept, nothing evicted
    assert "huge" not in cache and len(cache) == 8
    cache.pop("big")
    cache.expire(lambda v: v.startswith("x"))
    assert len(cache) == 0 and cache.bytes == 0


def test_h14_default_verified_cache_budget() -> None:
    from authgate.hotstate import HotState

    hot = HotState(None, ManualClock())  # type: ignore[arg-type]
    assert hot.verified.max_bytes == 64 * 1024 * 1024
    token = "e" * 600
    claims = {"iss": "http://127.0.0.1:8000", "sub": uuid.uuid4().hex, "aud": "authgate",
              "iat": 1, "exp": 901, "jti": "j" * 22, "scope": "a b c", "roles": ["a", "b"],
              "sid": uuid.uuid4().hex, "client_id": "authgate"}
    hot.verified.put(token, claims)
    assert 1500 <= hot.verified.bytes <= 4000  # about what such an entry really costs


def test_h14_no_raw_cookie_header_cached() -> None:
    from authgate.web import http

    assert not hasattr(http._cookie_value, "cache_info")  # no lru_cache of raw headers
    value = uuid.uuid4().hex
    assert http._cookie_value(f"a=1; xauthgate=no; authgate={value}; b=2", "authgate") == value
    assert http._cookie_value(f"authgate={value}", "authgate") == value
    assert http._cookie_value(f"authgate-at=x;authgate= {value} ", "authgate") == value
    assert http._cookie_value("xauthgate=1; authgatex=2", "authgate") is None
    assert http._cookie_value("authgate=\x01bad", "authgate") is None


def test_h14_repeated_revoke_writes_one_log_row(server: Server, api: httpx.Client) -> None:
    username, password, _ = register(server)
    access, _ = tokens(api, username, password)
    jti = segments(access)[1]["jti"]
    for _ in range(3):
        r = api.post("/auth/revoke", data={"token": access})
        assert r.status_code == 200, r.text
    assert me(api, access) == 401
    rows = db_rows(server, "SELECT COUNT(*) FROM revocations WHERE kind = 'jti' AND key = ?",
                   jti)
    assert rows[0][0] == 1


# -- h19: a revoked family's refresh cookie is invalid_grant, not csrf -------------------------

def test_h19_cookie_refresh_of_revoked_family_is_invalid_grant(server: Server,
                                                               api: httpx.Client) -> None:
    username, password, _ = register(server)
    c = AuthClient(server.url, server.settings)
    r = c.post("/auth/token", data={"grant_type": "password", "username": username,
                                    "password": password, "cookie": "1"})
    assert r.status_code == 200, r.text
    csrf = r.json()["csrf_token"]
    origin = {"Origin": server.url}
    # a live family with a wrong or missing CSRF value is still 403 csrf
    wrong = c.post("/auth/token", data={"grant_type": "refresh_token"},
                   headers={**origin, "X-CSRF-Token": csrf[:-2] + "xx"})
    assert wrong.status_code == 403 and wrong.json()["error"] == "csrf", wrong.text
    missing = c.post("/auth/token", data={"grant_type": "refresh_token"}, headers=origin)
    assert missing.status_code == 403 and missing.json()["error"] == "csrf", missing.text
    # the family is revoked (RFC 7009 with its refresh token)
    assert api.post("/auth/revoke", data={"token": c.jar[c.refresh_cookie]}).status_code == 200
    gone = c.post("/auth/token", data={"grant_type": "refresh_token"},
                  headers={**origin, "X-CSRF-Token": csrf})
    assert_invalid_grant(gone)
    c.close()


# -- the CI bug: concurrent refreshes deadlocked on PostgreSQL ---------------------------------

@pytest.fixture
async def pg_engine() -> AsyncIterator[Engine]:
    url = await _pg_database()
    engine = Engine(Settings(database_url=url), clock=ManualClock())
    await engine.start()
    yield engine
    await engine.stop()
    await _drop_pg(url)


async def test_concurrent_refreshes_never_deadlock_on_postgresql(
        pg_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten refreshes of one token at once, 30 times: exactly one wins each time and the
    others get InvalidGrant, never a database error. PostgreSQL detected deadlocks: a loser
    that queued behind the winner's row lock keeps a lock on the spent token after its
    no-op UPDATE, while a loser arriving after the commit takes the family row first; each
    then waits for the other (family row / token row). The first loser's revocation is
    slowed by 5 ms here to make that interleaving likely rather than a one-in-six chance."""
    user = await pg_engine.users.create_user("racer", "correct battery horse stapler")
    surprises: list[BaseException] = []
    revoke_family = Records._revoke_family
    first_loser: list[bool] = []

    async def slow_first_revocation(self: Records, conn: Any, family_id: str,
                                    now: float) -> None:
        if not first_loser:
            first_loser.append(True)
            await asyncio.sleep(0.005)
        await revoke_family(self, conn, family_id, now)

    monkeypatch.setattr(Records, "_revoke_family", slow_first_revocation)

    async def attempt(token: str, delay: float) -> Any:
        await asyncio.sleep(delay)
        return await pg_engine.grants.refresh_grant(token)

    for round_ in range(30):
        # a fresh family and refresh token, as a password grant makes (without its Argon2)
        now = pg_engine.clock.now()
        fam = TokenFamily(id=uuid.uuid4().hex, user_id=user.id, scope="", created_at=now,
                          last_seen_at=now, expires_at=now + 3600)
        token = new_secret()
        await pg_engine.records.create_family(fam, digest(token), fam.expires_at, None, now)
        first_loser.clear()
        # Staggered by 0-3 ms: some losers queue behind the winner's row lock, others
        # arrive just after its commit.
        step = (round_ % 4) * 0.001
        results = await asyncio.gather(*(attempt(token, i * step) for i in range(10)),
                                       return_exceptions=True)
        surprises += [r for r in results if isinstance(r, BaseException)
                      and not isinstance(r, InvalidGrant)]
        assert surprises == [], surprises
        assert sum(not isinstance(r, BaseException) for r in results) == 1


def test_a_cookie_with_control_characters_is_refused_cleanly(server: Server) -> None:
    """A session or token cookie holding control characters is just an unknown credential:
    401 (a tab reaches the app; other control characters are refused by the HTTP parser with
    400 before it), never a 500."""
    for name in ("__Host-authgate", "__Host-authgate-at"):
        r = httpx.get(f"{server.url}/auth/me", headers={"Cookie": f"{name}=abc\tdef"})
        assert r.status_code == 401, (name, r.status_code, r.text)
        r = httpx.get(f"{server.url}/auth/me", headers={"Cookie": f"{name}=abc\x01def"})
        assert r.status_code in (400, 401), (name, r.status_code, r.text)
