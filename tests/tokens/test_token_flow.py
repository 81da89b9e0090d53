"""The token side of the contract, black-box over HTTP against ``authgate serve``:
``/auth/token``, rotation and reuse detection, RFC 7009 revocation, logout everywhere,
the sessions list, forward-auth, tokens in cookies, the JWKS and key rotation."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.blackbox.support import one_line_error
from tests.conftest import Server
from tests.helpers import AuthClient, cookie_attrs
from tests.tokens.forge import b64u, segments

# The contract suite: run on SQLite and on PostgreSQL + Redis (tests/conftest.py).
ALL_BACKENDS = True
ENCRYPTED_BACKEND = True  # once more with TOKEN_ENCRYPTION=true (tests/conftest.py)

MakeServer = Callable[..., Server]
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


# -- helpers ------------------------------------------------------------------------------

_CLIENTS: dict[str, httpx.Client] = {}


def http(srv: Server) -> httpx.Client:
    """One keep-alive client per server (a fresh httpx client per call costs ~50 ms)."""
    if srv.url not in _CLIENTS:
        _CLIENTS[srv.url] = httpx.Client(base_url=srv.url, timeout=30)
    return _CLIENTS[srv.url]


@pytest.fixture(scope="module", autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    for client in _CLIENTS.values():
        client.close()
    _CLIENTS.clear()


def new_user(srv: Server, prefix: str = "user", roles: tuple[str, ...] = ()) -> tuple[str, str]:
    """A user: registered over HTTP (fast), or with the CLI when it needs roles."""
    if roles:
        return srv.new_user(prefix, roles=roles)
    username = f"{prefix}-{uuid.uuid4().hex[:10]}"
    password = f"pw {uuid.uuid4().hex} long enough"
    r = http(srv).post("/auth/register", json={"username": username, "password": password})
    assert r.status_code == 201, r.text
    return username, password


def grant(srv: Server, username: str, password: str, *, as_json: bool = False,
          **extra: Any) -> httpx.Response:
    body = {"grant_type": "password", "username": username, "password": password, **extra}
    if as_json:
        return http(srv).post("/auth/token", json=body)
    return http(srv).post("/auth/token", data=body)


def login_tokens(srv: Server, username: str, password: str, **extra: Any) -> tuple[str, str]:
    r = grant(srv, username, password, **extra)
    assert r.status_code == 200, r.text
    return r.json()["access_token"], r.json()["refresh_token"]


def refresh(srv: Server, token: str) -> httpx.Response:
    return http(srv).post("/auth/token",
                      data={"grant_type": "refresh_token", "refresh_token": token})


def me(srv: Server, access: str) -> httpx.Response:
    return http(srv).get("/auth/me", headers={"Authorization": f"Bearer {access}"})


def assert_oauth_error(r: httpx.Response, status: int, error: str) -> None:
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error", "error_description"}, r.json()
    assert r.json()["error"] == error
    assert isinstance(r.json()["error_description"], str)
    assert r.headers.get("cache-control") == "no-store"
    assert r.headers.get("pragma") == "no-cache"


def assert_token_refused(srv: Server, access: str) -> None:
    r = me(srv, access)
    assert r.status_code == 401, r.text
    assert r.headers.get("www-authenticate") == 'Bearer error="invalid_token"'


def wait_refused(srv: Server, access: str, within: float = 1.5) -> None:
    """The contract's bound: a revocation made elsewhere (the CLI) applies within 1 s."""
    deadline = time.monotonic() + within
    while True:
        r = me(srv, access)
        if r.status_code == 401 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert r.status_code == 401, f"still accepted after {within} s: {r.text}"


def jwks(srv: Server) -> dict[str, Any]:
    r = http(srv).get("/.well-known/jwks.json")
    assert r.status_code == 200
    return dict(r.json())


def families(srv: Server, access: str) -> list[dict[str, Any]]:
    r = http(srv).get("/auth/sessions", headers={"Authorization": f"Bearer {access}"})
    assert r.status_code == 200, r.text
    return [e for e in r.json() if e["kind"] == "token"]


# -- POST /auth/token -----------------------------------------------------------------------

@pytest.mark.parametrize("as_json", [True, False], ids=["json", "form"])
def test_password_grant(server: Server, as_json: bool) -> None:
    username, password = server.new_user(roles=("ops",))
    r = grant(server, username, password, as_json=as_json)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["scope"] == "ops"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["pragma"] == "no-cache"
    m = me(server, body["access_token"])
    assert m.status_code == 200
    assert m.json()["username"] == username and m.json()["auth"] == "token"
    assert m.json()["scopes"] == ["ops"] and m.json()["roles"] == ["ops"]
    assert "csrf_token" not in m.json()


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "form"])
def test_refresh_grant(server: Server, as_json: bool) -> None:
    username, password = new_user(server)
    access, rt1 = login_tokens(server, username, password)
    body = {"grant_type": "refresh_token", "refresh_token": rt1}
    r = (http(server).post("/auth/token", json=body) if as_json
         else http(server).post("/auth/token", data=body))
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"access_token", "token_type", "expires_in", "refresh_token",
                             "scope"}
    assert r.headers["cache-control"] == "no-store" and r.headers["pragma"] == "no-cache"
    assert r.json()["refresh_token"] != rt1
    assert r.json()["access_token"] != access
    assert me(server, r.json()["access_token"]).json()["username"] == username


def test_token_endpoint_errors(server: Server) -> None:
    username, password = new_user(server)
    url = "/auth/token"
    c = http(server)
    wrong = grant(server, username, "wrong password, long enough")
    assert_oauth_error(wrong, 400, "invalid_grant")
    unknown = grant(server, "nobody-" + username, "wrong password, long enough")
    assert_oauth_error(unknown, 400, "invalid_grant")
    assert unknown.content == wrong.content, "unknown user and wrong password must match"
    assert_oauth_error(c.post(url, data={"username": username, "password": password}),
                       400, "invalid_request")
    assert_oauth_error(c.post(url, data={"grant_type": "password", "username": username}),
                       400, "invalid_request")
    assert_oauth_error(c.post(url, json={"grant_type": "client_credentials"}),
                       400, "unsupported_grant_type")
    assert_oauth_error(c.post(url, data={"grant_type": "authorization_code",
                                             "code": "x"}), 400, "invalid_request")
    assert_oauth_error(c.post(url, data={"grant_type": "refresh_token"}),
                       400, "invalid_request")
    assert_oauth_error(refresh(server, "x" * 43), 400, "invalid_grant")
    assert_oauth_error(refresh(server, ""), 400, "invalid_grant")
    # and the right credentials still work (no throttling from the above)
    assert grant(server, username, password).status_code == 200


def test_issued_token_header_and_claims(server: Server) -> None:
    username, password = server.new_user(roles=("ops", "audit"))
    access, _ = login_tokens(server, username, password)
    assert access.count(".") == (4 if server.settings.get("token_encryption") else 2)
    header, claims = segments(server.signed_token(access))
    keys = jwks(server)["keys"]
    assert header["alg"] == "EdDSA" and header["typ"] == "at+jwt"
    assert set(header) == {"alg", "kid", "typ"}
    assert [k["kid"] for k in keys].count(header["kid"]) == 1
    user_id = me(server, access).json()["id"]
    for name in ("iss", "sub", "aud", "exp", "iat", "jti", "scope", "roles"):
        assert name in claims, name
    assert claims["iss"] == server.url  # ISSUER defaults to PUBLIC_URL
    assert claims["aud"] == "authgate"  # AUDIENCE defaults to authgate
    assert claims["sub"] == user_id
    assert claims["exp"] - claims["iat"] == 900
    assert abs(claims["iat"] - time.time()) < 60
    assert claims["scope"] == "ops audit"
    assert claims["roles"] == ["ops", "audit"]
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    payload_text = json.dumps(claims)
    assert password not in payload_text
    assert not any(k in claims for k in ("password", "password_hash", "email", "csrf"))
    # and it verifies with nothing but the JWKS
    jwk = next(k for k in keys if k["kid"] == header["kid"])
    verified = jwt.decode(server.signed_token(access), jwt.PyJWK(jwk).key, algorithms=["EdDSA"],
                          audience="authgate", issuer=server.url)
    assert verified == claims


def test_jti_and_refresh_tokens_unique(server: Server) -> None:
    username, password = new_user(server)
    access, rt = login_tokens(server, username, password)
    jtis = [segments(server.signed_token(access))[1]["jti"]]
    refresh_tokens = [rt]
    with httpx.Client(base_url=server.url) as c:
        for _ in range(50):  # 51 of each: a repeat means far less than 128 random bits
            r = c.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": rt})
            assert r.status_code == 200, r.text
            rt = r.json()["refresh_token"]
            jtis.append(segments(server.signed_token(r.json()["access_token"]))[1]["jti"])
            refresh_tokens.append(rt)
    assert len(set(jtis)) == len(jtis)
    assert len(set(refresh_tokens)) == len(refresh_tokens)
    for token in refresh_tokens:
        assert len(token) >= 22 and "." not in token
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                 "0123456789-_")


# -- scopes ---------------------------------------------------------------------------------

def test_role_scopes_string_form_from_environment(make_server: MakeServer) -> None:
    srv = make_server(role_scopes="admin=reports:read reports:write;editor=reports:read")
    username, password = srv.new_user(roles=("admin", "editor"))
    assert grant(srv, username, password).json()["scope"] == "reports:read reports:write"


def test_role_scopes_string_form_no_traceback(tmp_path: Path) -> None:
    """The same string through the CLI: accepted (exit 0, nothing on stderr); a malformed
    one is exit 2 with one line naming the setting and the expected form; never a
    traceback."""
    srv = Server(tmp_path, {"role_scopes": "admin=reports:read reports:write"})
    done = srv.cli("users", "create", "rsadmin", "--password-stdin", "--role", "admin",
                   input="role scopes string form password\n")
    assert done.returncode == 0 and done.stderr == "", (done.returncode, done.stderr)
    done = srv.cli("users", "list")
    assert done.returncode == 0 and done.stderr == "", (done.returncode, done.stderr)
    assert "rsadmin" in done.stdout
    bad = Server(tmp_path, {"role_scopes": "admin reports:read"})  # no "="
    done = bad.cli("users", "list")
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    one_line_error(done.stderr)
    assert "AUTHGATE_ROLE_SCOPES" in done.stderr, done.stderr
    assert "role=scope1 scope2;role2=scope3" in done.stderr, done.stderr


def test_scopes_from_roles(make_server: MakeServer) -> None:
    srv = make_server(role_scopes=json.dumps({"admin": ["reports:read", "reports:write"]}))
    username, password = srv.new_user(roles=("admin", "editor"))
    everything = grant(srv, username, password)
    assert everything.json()["scope"] == "reports:read reports:write editor"
    narrowed = grant(srv, username, password, scope="reports:read")
    assert narrowed.json()["scope"] == "reports:read"
    filtered = grant(srv, username, password, scope="reports:read reports:delete admin")
    assert filtered.json()["scope"] == "reports:read"
    for r, scopes in ((everything, ["reports:read", "reports:write", "editor"]),
                      (narrowed, ["reports:read"])):
        assert segments(r.json()["access_token"])[1]["scope"] == " ".join(scopes)
        assert me(srv, r.json()["access_token"]).json()["scopes"] == scopes
    # a refresh keeps the narrowed scope
    again = refresh(srv, narrowed.json()["refresh_token"])
    assert again.json()["scope"] == "reports:read"
    # scope on /auth/verify
    verify = "/auth/verify"
    ok = http(srv).get(verify, params={"scope": "reports:write"},
                   headers={"Authorization": f"Bearer {everything.json()['access_token']}"})
    assert ok.status_code == 200
    denied = http(srv).get(verify, params={"scope": "reports:write"},
                       headers={"Authorization": f"Bearer {narrowed.json()['access_token']}"})
    assert denied.status_code == 403
    assert denied.json()["error"] == "insufficient_scope"
    assert denied.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')


# -- refresh rotation and reuse -------------------------------------------------------------

def test_rotation_and_reuse_revokes_the_family(server: Server) -> None:
    username, password = new_user(server)
    at1, rt1 = login_tokens(server, username, password)
    other_at, other_rt = login_tokens(server, username, password)  # another family
    r = refresh(server, rt1)
    assert r.status_code == 200
    at2, rt2 = r.json()["access_token"], r.json()["refresh_token"]
    assert rt2 != rt1
    r = refresh(server, rt2)
    assert r.status_code == 200
    at3, rt3 = r.json()["access_token"], r.json()["refresh_token"]
    assert me(server, at3).status_code == 200
    # RT1 replayed: the family is gone
    assert_oauth_error(refresh(server, rt1), 400, "invalid_grant")
    assert_oauth_error(refresh(server, rt3), 400, "invalid_grant")
    assert_oauth_error(refresh(server, rt2), 400, "invalid_grant")
    for access in (at1, at2, at3):
        assert_token_refused(server, access)
    # another family of the same user is untouched
    assert me(server, other_at).status_code == 200
    assert refresh(server, other_rt).status_code == 200


def test_ten_concurrent_refreshes_exactly_one_wins(server: Server) -> None:
    username, password = new_user(server)
    _, rt = login_tokens(server, username, password)
    barrier = threading.Barrier(10)

    def attempt(_: int) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            c.get("/healthz")  # connect first, so the requests really overlap
            barrier.wait()
            return c.post("/auth/token", data={"grant_type": "refresh_token",
                                               "refresh_token": rt})

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(attempt, range(10)))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] + [400] * 9, statuses
    for r in results:
        if r.status_code == 400:
            assert r.json()["error"] == "invalid_grant"
    # With REFRESH_REUSE_GRACE=0 the losers presented a used token: that is reuse, and
    # reuse revokes the whole family, the winner's new tokens included.
    winner = next(r for r in results if r.status_code == 200)
    assert_oauth_error(refresh(server, winner.json()["refresh_token"]), 400, "invalid_grant")
    assert_token_refused(server, winner.json()["access_token"])


def test_reuse_grace_window(make_server: MakeServer) -> None:
    srv = make_server(refresh_reuse_grace=5)
    username, password = new_user(srv)
    at1, rt1 = login_tokens(srv, username, password)
    r = refresh(srv, rt1)
    assert r.status_code == 200
    rt2 = r.json()["refresh_token"]
    # the tab that lost the race presents RT1 again, within the window: no revocation
    again = refresh(srv, rt1)
    assert again.status_code == 200, again.text
    r = refresh(srv, rt2)
    assert r.status_code == 200, "the family must survive a replay inside the grace window"
    at3, rt3 = r.json()["access_token"], r.json()["refresh_token"]
    assert me(srv, at3).status_code == 200
    # outside the window the same replay is theft
    srv.advance(6)
    assert_oauth_error(refresh(srv, rt1), 400, "invalid_grant")
    assert_oauth_error(refresh(srv, rt3), 400, "invalid_grant")
    for access in (at1, at3, again.json()["access_token"]):
        assert_token_refused(srv, access)


def test_reuse_grace_keeps_a_single_branch(make_server: MakeServer) -> None:
    srv = make_server(refresh_reuse_grace=5)
    username, password = new_user(srv)
    _, rt1 = login_tokens(srv, username, password)
    first = refresh(srv, rt1)
    second = refresh(srv, rt1)  # within the grace window
    assert first.status_code == 200 and second.status_code == 200
    rt2a, rt2b = first.json()["refresh_token"], second.json()["refresh_token"]
    assert refresh(srv, rt2a).status_code == 200  # the legitimate branch moves on
    # RT-04: "Exactly one new branch survives": the sibling is now stale
    assert refresh(srv, rt2b).status_code == 400


def test_family_absolute_lifetime_not_extended(make_server: MakeServer) -> None:
    srv = make_server(refresh_token_ttl=120)
    username, password = new_user(srv)
    access, rt = login_tokens(srv, username, password)
    expires = [f["expires_at"] for f in families(srv, access)]
    assert len(expires) == 1
    for _ in range(2):
        srv.advance(50)
        r = refresh(srv, rt)
        assert r.status_code == 200, r.text
        access, rt = r.json()["access_token"], r.json()["refresh_token"]
        assert [f["expires_at"] for f in families(srv, access)] == expires
    srv.advance(25)  # 125 s after the login, 25 s after the last rotation
    assert_oauth_error(refresh(srv, rt), 400, "invalid_grant")


def test_family_idle_expiry(make_server: MakeServer) -> None:
    """RT-05 (a): with REFRESH_IDLE_TTL a family unused for longer than that is dead, while
    using it within the window keeps it alive."""
    srv = make_server(refresh_idle_ttl=60, refresh_token_ttl=600)
    username, password = new_user(srv)
    _, rt = login_tokens(srv, username, password)
    for _ in range(2):
        srv.advance(45)
        r = refresh(srv, rt)
        assert r.status_code == 200, r.text
        rt = r.json()["refresh_token"]
    srv.advance(61)
    assert_oauth_error(refresh(srv, rt), 400, "invalid_grant")


def test_access_token_leeway(make_server: MakeServer) -> None:
    """JWT-08: with TOKEN_LEEWAY=L a token is good until exp + L, and not a second more."""
    srv = make_server(access_token_ttl=60, token_leeway=10)
    username, password = new_user(srv)
    first, _ = login_tokens(srv, username, password)
    second, _ = login_tokens(srv, username, password)
    exp = segments(first)[1]["exp"]
    assert segments(second)[1]["exp"] - exp in (0, 1)
    assert me(srv, first).status_code == 200

    def advance_to(target: float) -> None:
        srv.advance(target - (time.time() + srv.offset) - 0.02)

    advance_to(exp + 10 - 1.5)
    assert me(srv, first).status_code == 200
    advance_to(segments(second)[1]["exp"] + 10 + 0.05)
    assert_token_refused(srv, first)
    assert_token_refused(srv, second)


# -- RFC 7009 /auth/revoke ------------------------------------------------------------------

@pytest.mark.parametrize("token", ["garbage", "x" * 43, "a.b.c", "eyJhbGciOiJub25lIn0.e30.",
                                   "\u00e9\u00e9\u00e9", "x" * 9000])
def test_revoke_unknown_token_is_200(server: Server, token: str) -> None:
    for kwargs in ({"data": {"token": token}}, {"json": {"token": token}},
                   {"data": {"token": token, "token_type_hint": "bogus_hint"}}):
        r = http(server).post("/auth/revoke", **kwargs)  # type: ignore[arg-type]
        assert r.status_code == 200, r.text
        assert r.content == b""
        assert r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("body", [b"", b"token=", b"token_type_hint=refresh_token",
                                  b"{}", b'{"token":""}', b'{"token":null}'])
def test_revoke_without_token_is_invalid_request(server: Server, body: bytes) -> None:
    ctype = "application/json" if body.startswith(b"{") else "application/x-www-form-urlencoded"
    r = http(server).post("/auth/revoke", content=body, headers={"Content-Type": ctype})
    assert_oauth_error(r, 400, "invalid_request")


def test_revoke_refresh_token_takes_the_family(server: Server) -> None:
    username, password = new_user(server)
    at1, rt1 = login_tokens(server, username, password)
    r = refresh(server, rt1)
    at2, rt2 = r.json()["access_token"], r.json()["refresh_token"]
    other_at, other_rt = login_tokens(server, username, password)
    r = http(server).post("/auth/revoke",
                   data={"token": rt2, "token_type_hint": "refresh_token"})
    assert r.status_code == 200 and r.content == b""
    assert_oauth_error(refresh(server, rt2), 400, "invalid_grant")
    assert_token_refused(server, at1)
    assert_token_refused(server, at2)
    assert me(server, other_at).status_code == 200
    assert refresh(server, other_rt).status_code == 200
    # revoking it again is still a quiet 200
    assert http(server).post("/auth/revoke", data={"token": rt2}).status_code == 200


@pytest.mark.parametrize("hint", [None, "access_token", "refresh_token"])
def test_revoke_access_token(server: Server, hint: str | None) -> None:
    username, password = new_user(server)
    access, _ = login_tokens(server, username, password)
    other, _ = login_tokens(server, username, password)
    assert me(server, access).status_code == 200  # cached as verified first
    data = {"token": access, **({"token_type_hint": hint} if hint else {})}
    r = http(server).post("/auth/revoke", data=data)
    assert r.status_code == 200 and r.content == b""
    assert_token_refused(server, access)
    assert me(server, other).status_code == 200


# -- logout everywhere, password change, disable --------------------------------------------

def test_logout_everywhere_kills_every_token(server: Server) -> None:
    username, password = new_user(server)
    at_a, rt_a = login_tokens(server, username, password)
    at_b, rt_b = login_tokens(server, username, password)
    browser = server.client()
    assert browser.login(username, password).status_code == 200
    r = http(server).delete("/auth/sessions", headers={"Authorization": f"Bearer {at_a}"})
    assert r.status_code == 204, r.text
    for access in (at_a, at_b):
        assert_token_refused(server, access)
    for rt in (rt_a, rt_b):
        assert_oauth_error(refresh(server, rt), 400, "invalid_grant")
    assert browser.get("/auth/me").status_code == 401
    # signing in again afterwards works
    fresh, _ = login_tokens(server, username, password)
    assert me(server, fresh).status_code == 200


def test_password_change_revokes_other_families(server: Server) -> None:
    username, password = new_user(server)
    at_a, rt_a = login_tokens(server, username, password)
    at_b, rt_b = login_tokens(server, username, password)
    new_password = password + " but newer"
    r = http(server).post("/auth/password", headers={"Authorization": f"Bearer {at_a}"},
                   json={"current_password": password, "new_password": new_password})
    assert r.status_code == 204, r.text
    assert_token_refused(server, at_b)
    assert_oauth_error(refresh(server, rt_b), 400, "invalid_grant")
    # "every *other* session and token family": the caller's own one goes on
    assert me(server, at_a).status_code == 200
    assert refresh(server, rt_a).status_code == 200
    assert_oauth_error(grant(server, username, password), 400, "invalid_grant")
    assert grant(server, username, new_password).status_code == 200


def test_cli_set_password_refuses_old_tokens(server: Server) -> None:
    username, password = new_user(server)
    access, rt = login_tokens(server, username, password)
    assert me(server, access).status_code == 200
    done = server.cli("users", "set-password", username, "--password-stdin",
                      input=password + " reset by admin\n")
    assert done.returncode == 0, done.stderr
    wait_refused(server, access)
    assert_oauth_error(refresh(server, rt), 400, "invalid_grant")


def test_cli_disable_refuses_old_tokens(server: Server) -> None:
    username, password = new_user(server)
    access, rt = login_tokens(server, username, password)
    assert me(server, access).status_code == 200
    done = server.cli("users", "disable", username)
    assert done.returncode == 0, done.stderr
    wait_refused(server, access)
    assert_oauth_error(refresh(server, rt), 400, "invalid_grant")
    assert_oauth_error(grant(server, username, password), 400, "invalid_grant")
    assert server.cli("users", "enable", username).returncode == 0
    fresh, _ = login_tokens(server, username, password)
    assert me(server, fresh).status_code == 200
    assert_token_refused(server, access)  # enabling again does not revive old tokens


# -- token families in /auth/sessions -------------------------------------------------------

def test_token_families_listed_and_revocable(server: Server) -> None:
    username, password = new_user(server)
    at_a, rt_a = login_tokens(server, username, password)
    at_b, rt_b = login_tokens(server, username, password)
    listed = families(server, at_a)
    assert len(listed) == 2
    for entry in listed:
        assert set(entry) == {"id", "kind", "created_at", "last_seen_at", "expires_at", "ip",
                              "user_agent", "current"}
        assert entry["created_at"].endswith("Z") and entry["expires_at"].endswith("Z")
    sid_a = segments(server.signed_token(at_a))[1]["sid"]
    sid_b = segments(server.signed_token(at_b))[1]["sid"]
    assert {e["id"]: e["current"] for e in listed} == {sid_a: True, sid_b: False}
    # someone else cannot revoke it
    intruder, intruder_pw = new_user(server, "intruder")
    intruder_at, _ = login_tokens(server, intruder, intruder_pw)
    r = http(server).delete(f"/auth/sessions/{sid_b}",
                     headers={"Authorization": f"Bearer {intruder_at}"})
    assert r.status_code == 404
    assert me(server, at_b).status_code == 200
    r = http(server).delete(f"/auth/sessions/{sid_b}",
                     headers={"Authorization": f"Bearer {at_a}"})
    assert r.status_code == 204, r.text
    assert_token_refused(server, at_b)
    assert_oauth_error(refresh(server, rt_b), 400, "invalid_grant")
    assert me(server, at_a).status_code == 200
    assert [e["id"] for e in families(server, at_a)] == [sid_a]
    r = http(server).delete(f"/auth/sessions/{sid_b}",
                     headers={"Authorization": f"Bearer {at_a}"})
    assert r.status_code == 404
    assert refresh(server, rt_a).status_code == 200


# -- /auth/verify -----------------------------------------------------------------------------

def test_verify_headers_and_bearer_beats_cookie(server: Server) -> None:
    alice, alice_pw = server.new_user("alice", roles=("ops", "audit"))
    bob, bob_pw = server.new_user("bob", roles=("viewer",))
    alice_at, _ = login_tokens(server, alice, alice_pw)
    alice_id = me(server, alice_at).json()["id"]
    r = http(server).get("/auth/verify", headers={"Authorization": f"Bearer {alice_at}"})
    assert r.status_code == 200
    assert r.headers["x-auth-user-id"] == alice_id
    assert r.headers["x-auth-username"] == alice
    assert r.headers["x-auth-roles"] == "ops,audit"
    # bob's browser session plus alice's bearer token: the bearer wins
    browser = server.client()
    assert browser.login(bob, bob_pw).status_code == 200
    assert browser.get("/auth/verify").headers["x-auth-username"] == bob
    both = browser.get("/auth/verify", headers={"Authorization": f"Bearer {alice_at}"})
    assert both.status_code == 200 and both.headers["x-auth-user-id"] == alice_id
    assert browser.get("/auth/me", headers={"Authorization": f"Bearer {alice_at}"}
                       ).json()["username"] == alice
    # a refused bearer does not fall back to the cookie
    bad = browser.get("/auth/verify", headers={"Authorization": "Bearer not.a.token"})
    assert bad.status_code == 401
    assert bad.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert http(server).get("/auth/verify").status_code == 401


def test_verify_scope(server: Server) -> None:
    username, password = server.new_user(roles=("ops",))
    access, _ = login_tokens(server, username, password)
    auth = {"Authorization": f"Bearer {access}"}
    assert http(server).get("/auth/verify", params={"scope": "ops"},
                     headers=auth).status_code == 200
    r = http(server).get("/auth/verify", params={"scope": "admin"}, headers=auth)
    assert r.status_code == 403
    assert r.json()["error"] == "insufficient_scope"
    assert r.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')
    r = http(server).get("/auth/verify", params={"scope": "ops admin"}, headers=auth)
    assert r.status_code == 403


# -- tokens in cookies ------------------------------------------------------------------------

@pytest.mark.parametrize("as_json", [True, False], ids=["json", "form"])
def test_tokens_in_cookies(server: Server, as_json: bool) -> None:
    username, password = new_user(server)
    c: AuthClient = server.client()
    body = {"grant_type": "password", "username": username, "password": password}
    r = (c.post("/auth/token", json={**body, "cookie": True}) if as_json
         else c.post("/auth/token", data={**body, "cookie": "1"}))
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"token_type", "expires_in", "scope", "csrf_token"}
    assert r.headers["cache-control"] == "no-store"
    at = cookie_attrs(r, "__Host-authgate-at")
    rt = cookie_attrs(r, "__Secure-authgate-rt")
    assert at is not None and rt is not None, r.headers.get_list("set-cookie")
    assert at["value"] not in r.text and rt["value"] not in r.text
    # a JWS, or a JWE (five segments) on the encrypted backend; the refresh token is opaque
    dots = 4 if server.settings.get("token_encryption") else 2
    assert at["value"].count(".") == dots and rt["value"].count(".") == 0
    assert "secure" in at and "httponly" in at and "domain" not in at
    assert at["samesite"] == "Lax" and at["path"] == "/" and at["max-age"] == "900"
    assert "secure" in rt and "httponly" in rt and "domain" not in rt
    assert rt["samesite"] == "Strict" and rt["path"] == "/auth/token"
    csrf = r.json()["csrf_token"]
    # the cookie authenticates, as a token
    m = c.get("/auth/me")
    assert m.status_code == 200 and m.json()["auth"] == "token"
    assert m.json()["username"] == username and m.json()["csrf_token"] == csrf
    # refresh from the cookie needs the CSRF header
    no_csrf = c.post("/auth/token", data={"grant_type": "refresh_token"})
    assert no_csrf.status_code == 403, no_csrf.text
    wrong = c.post("/auth/token", data={"grant_type": "refresh_token"},
                   headers={"X-CSRF-Token": csrf[:-2] + "xx"})
    assert wrong.status_code == 403
    rr = c.post("/auth/token", data={"grant_type": "refresh_token"},
                headers={"X-CSRF-Token": csrf})
    assert rr.status_code == 200, rr.text
    assert set(rr.json()) == {"token_type", "expires_in", "scope", "csrf_token"}
    new_at = cookie_attrs(rr, "__Host-authgate-at")
    new_rt = cookie_attrs(rr, "__Secure-authgate-rt")
    assert new_at is not None and new_rt is not None
    assert new_at["value"] != at["value"] and new_rt["value"] != rt["value"]
    assert rr.json()["csrf_token"] == csrf  # the family's CSRF value
    # unsafe requests authenticated by the access-token cookie need X-CSRF-Token
    c.csrf = csrf
    refused = c.post("/auth/logout")
    assert refused.status_code == 403 and refused.json()["error"] == "csrf"
    foreign = c.unsafe("POST", "/auth/logout", headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert c.get("/auth/me").status_code == 200
    done = c.unsafe("POST", "/auth/logout")
    assert done.status_code == 204, done.text
    assert_token_refused(server, new_at["value"])
    assert_oauth_error(refresh(server, new_rt["value"]), 400, "invalid_grant")
    assert_oauth_error(refresh(server, rt["value"]), 400, "invalid_grant")  # spent long ago


# -- JWKS and keys ----------------------------------------------------------------------------

def _thumbprint(jwk: dict[str, Any]) -> str:
    canonical = json.dumps({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]},
                           separators=(",", ":"), sort_keys=True)
    return b64u(hashlib.sha256(canonical.encode()).digest())


def test_jwks_public_only_and_cacheable(server: Server) -> None:
    r = http(server).get("/.well-known/jwks.json")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    cache = r.headers.get("cache-control", "")
    max_age = [p for p in cache.replace(" ", "").split(",") if p.startswith("max-age=")]
    assert max_age and int(max_age[0].split("=")[1]) > 0, cache
    assert "no-store" not in cache and "private" not in cache
    body = r.json()
    assert set(body) == {"keys"} and body["keys"]
    kids = [k["kid"] for k in body["keys"]]
    assert len(set(kids)) == len(kids)
    for key in body["keys"]:
        assert not PRIVATE_MEMBERS & set(key), key
        assert key["kty"] == "OKP" and key["crv"] == "Ed25519"
        assert key["alg"] == "EdDSA" and key["use"] == "sig"
        assert key["kid"] == _thumbprint(key)
        assert len(jwt.PyJWK(key).key.public_bytes_raw()) == 32


def test_key_rotation(make_server: MakeServer) -> None:
    srv = make_server()
    username, password = new_user(srv)
    old_token, _ = login_tokens(srv, username, password)
    old_kid = segments(old_token)[0]["kid"]
    assert [k["kid"] for k in jwks(srv)["keys"]] == [old_kid]
    done = srv.cli("keys", "rotate", "--publish-ahead", "0")
    assert done.returncode == 0, done.stderr
    srv.restart()
    kids = [k["kid"] for k in jwks(srv)["keys"]]
    assert old_kid in kids and len(kids) == 2
    assert me(srv, old_token).status_code == 200
    new_token, _ = login_tokens(srv, username, password)
    new_kid = segments(new_token)[0]["kid"]
    assert new_kid != old_kid and new_kid in kids
    assert me(srv, new_token).status_code == 200
    client = jwt.PyJWKClient(f"{srv.url}/.well-known/jwks.json", cache_jwk_set=False)
    for token in (old_token, new_token):
        key = client.get_signing_key_from_jwt(token)
        jwt.decode(token, key.key, algorithms=["EdDSA"], audience="authgate", issuer=srv.url)
    # once every token of the old key has expired, the old key leaves the JWKS
    srv.advance(900 + 61 + 5)
    srv.restart()
    assert [k["kid"] for k in jwks(srv)["keys"]] == [new_kid]
    assert_token_refused(srv, old_token)
