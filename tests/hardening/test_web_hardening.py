"""Issue 9, the web surface: login CSRF through every cookie-setting endpoint (h01), an
unambiguous ``X-Auth-Username`` (h15), the proxied method in ``/auth/verify`` and
cross-site WebSocket hijacking through the Starlette middleware (h16), an unreachable
Redis at ``serve`` (h17), and RFC 6749 §5.2 errors only from the OAuth endpoints (h18)."""

from __future__ import annotations

import html
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, unquote_plus

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocket

from authgate import AuthGate, AuthGateMiddleware, Settings
from tests.blackbox.support import EVIL, one_line_error, register
from tests.conftest import AUTHGATE, Server, env_for, free_port
from tests.helpers import AuthClient

CROSS_SITE = [{"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"},
              {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}]
CROSS_IDS = ["foreign-origin", "sec-fetch-site", "both", "null-origin"]


def oauth_error(response: httpx.Response, status: int, code: str) -> None:
    """RFC 6749 §5.2's error body: exactly {"error", "error_description"}."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers.get("content-type", "").startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "error_description"}, body
    assert body["error"] == code, body
    assert isinstance(body["error_description"], str) and body["error_description"]


def set_cookies(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


@pytest.fixture(scope="module")
def account(server: Server) -> tuple[str, str]:
    username, password, _ = register(server)
    return username, password


# -- h01: every request that sets a credential cookie refuses a cross-site request -----------

def token_form(username: str, password: str) -> dict[str, str]:
    return {"grant_type": "password", "username": username, "password": password,
            "cookie": "1"}


@pytest.mark.parametrize("headers", CROSS_SITE, ids=CROSS_IDS)
def test_h01_token_cookie_mode_refuses_cross_site(server: Server, account: tuple[str, str],
                                                  headers: dict[str, str]) -> None:
    """An auto-submitting cross-site form (urlencoded: no preflight) with the attacker's
    credentials must not plant the attacker's token cookies in the victim's browser."""
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.post("/auth/token", data=token_form(*account), headers=headers)
    oauth_error(r, 403, "csrf")
    assert set_cookies(r) == []


@pytest.mark.parametrize("headers", CROSS_SITE[:2], ids=CROSS_IDS[:2])
def test_h01_token_cookie_mode_refresh_from_body_refuses_cross_site(
        server: Server, account: tuple[str, str], headers: dict[str, str]) -> None:
    """The same swap with the attacker's own refresh token in the form body."""
    c = server.client()
    refresh = c.token(*account).json()["refresh_token"]
    r = c.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh,
                                    "cookie": "1"}, headers=headers)
    oauth_error(r, 403, "csrf")
    assert set_cookies(r) == []
    # Refused before the grant was looked at: the refresh token is still unused.
    assert c.post("/auth/token", data={"grant_type": "refresh_token",
                                       "refresh_token": refresh}).status_code == 200


@pytest.mark.parametrize("headers", [{}, "same-origin"], ids=["no-headers", "same-origin"])
def test_h01_token_cookie_mode_same_origin_and_non_browser_work(
        server: Server, account: tuple[str, str], headers: Any) -> None:
    c = server.client()
    if headers == "same-origin":
        headers = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"}
    r = c.post("/auth/token", data=token_form(*account), headers=headers)
    assert r.status_code == 200, r.text
    assert "access_token" not in r.json() and r.json()["csrf_token"]
    assert c.access_cookie in c.jar and c.refresh_cookie in c.jar
    assert c.get("/auth/me").json()["auth"] == "token"


def test_h01_token_without_cookie_mode_is_not_origin_checked(
        server: Server, account: tuple[str, str]) -> None:
    """No cookie set, nothing ambient: an API client's request is never refused for its
    Origin (a browser app calling a token endpoint CORS-style keeps working)."""
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.post("/auth/token", headers={"Origin": EVIL},
                   data={k: v for k, v in token_form(*account).items() if k != "cookie"})
    assert r.status_code == 200 and r.json()["access_token"]
    # No credential cookie (the device cookie, a throttle counter of its own for a known
    # browser, authenticates nothing).
    assert [c for c in set_cookies(r) if not c.startswith("__Host-authgate-device=")] == []


@pytest.mark.parametrize("headers", CROSS_SITE, ids=CROSS_IDS)
@pytest.mark.parametrize("form", [False, True], ids=["json", "urlencoded"])
def test_h01_api_login_refuses_cross_site(server: Server, account: tuple[str, str],
                                          headers: dict[str, str], form: bool) -> None:
    username, password = account
    body: dict[str, Any] = ({"data": {"username": username, "password": password}} if form
                            else {"json": {"username": username, "password": password}})
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.post("/auth/login", headers=headers, **body)
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "csrf"
    assert set_cookies(r) == []


@pytest.mark.parametrize("same_origin", [False, True], ids=["no-headers", "same-origin"])
def test_h01_api_login_same_origin_and_non_browser_work(
        server: Server, account: tuple[str, str], same_origin: bool) -> None:
    c = server.client()
    headers = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"} if same_origin else {}
    assert c.login(*account, headers=headers).status_code == 200
    assert c.session_value


def page_form(c: AuthClient) -> str:
    r = c.get("/login")
    assert r.status_code == 200
    token = html.unescape(r.text.split('name="form_token" value="', 1)[1].split('"', 1)[0])
    assert token
    return token


@pytest.mark.parametrize("headers", CROSS_SITE, ids=CROSS_IDS)
def test_h01_login_form_refuses_cross_site_and_sets_no_cookie(
        server: Server, account: tuple[str, str], headers: dict[str, str]) -> None:
    """Refused with no Set-Cookie at all: not the session, and not a fresh form nonce
    either (that would replace the one of the victim's open /login tab)."""
    c = server.client()
    token = page_form(c)
    nonce = dict(c.jar)
    r = c.post("/login", headers=headers, data={"form_token": token, "username": account[0],
                                                "password": account[1]})
    assert r.status_code == 403
    assert set_cookies(r) == []
    assert c.jar == nonce
    assert c.get("/auth/me").status_code == 401


@pytest.mark.parametrize("same_origin", [False, True], ids=["no-headers", "same-origin"])
def test_h01_login_form_same_origin_and_non_browser_work(
        server: Server, account: tuple[str, str], same_origin: bool) -> None:
    c = server.client()
    token = page_form(c)
    headers = {"Origin": server.url, "Sec-Fetch-Site": "same-origin"} if same_origin else {}
    r = c.post("/login", headers=headers, data={"form_token": token, "username": account[0],
                                                "password": account[1]})
    assert r.status_code == 303, r.text
    assert c.session_value and c.get("/auth/me").status_code == 200


# -- h15: X-Auth-Username decodes to exactly one username --------------------------------------

def verify_username(server: Server, username: str, password: str) -> str:
    c = server.client()
    token = c.token(username, password).json()["access_token"]
    r = c.get("/auth/verify", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    header = r.headers["x-auth-username"]
    assert header.isascii() and header.isprintable(), header
    return header


def test_h15_x_auth_username_decodes_to_exactly_the_username(server: Server) -> None:
    tag = uuid.uuid4().hex[:8]
    names = [f"admin-{tag}", f"%61dmin-{tag}", f"\u00e1dmin-{tag}", f"%C3%A1dmin-{tag}",
             f"a+b c-{tag}", f"a b c-{tag}", f"%2561dmin-{tag}", f"x\u2028y\u00a0z-{tag}"]
    headers = {}
    for name in names:
        password = f"pw {uuid.uuid4().hex} long enough"
        register(server, name, password)
        headers[name] = verify_username(server, name, password)
    for name, header in headers.items():
        # Percent-decoding (and form decoding, + as space) gives back exactly this name...
        assert unquote(header, errors="strict") == name, (name, header)
        assert unquote_plus(header, errors="strict") == name, (name, header)
    # ... so no two users share a header, before or after decoding.
    assert len(set(headers.values())) == len(names)
    assert headers[f"admin-{tag}"] == f"admin-{tag}"  # plain names are sent as they are


# -- h16: the proxied method, and websocket handshakes ------------------------------------------

@pytest.fixture(scope="module")
def session_client(server: Server, account: tuple[str, str]) -> Iterator[AuthClient]:
    c = server.client()
    assert c.login(*account).status_code == 200
    yield c
    c.close()


@pytest.mark.parametrize(("original", "forwarded"), [
    ("POST", "GET"),   # nginx sets X-Original-Method; the client wrote X-Forwarded-Method
    ("GET", "POST"),   # Traefik/Caddy set X-Forwarded-Method; the client wrote the other
    ("DELETE", None),
    (None, "PUT"),
    ("PROPFIND", None),  # any method that is not safe (RFC 9110 §9.2.1)
])
def test_h16_verify_csrf_checks_a_cookie_request_any_header_calls_unsafe(
        session_client: AuthClient, original: str | None, forwarded: str | None) -> None:
    headers = {k: v for k, v in (("X-Original-Method", original),
                                 ("X-Forwarded-Method", forwarded)) if v}
    r = session_client.get("/auth/verify", headers=headers)
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "csrf"
    ok = session_client.get("/auth/verify", headers={
        **headers, "X-CSRF-Token": session_client.csrf or "", "Origin": session_client.origin})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("headers", [{}, {"X-Original-Method": "GET"},
                                     {"X-Original-Method": "get", "X-Forwarded-Method": "HEAD"}])
def test_h16_verify_safe_methods_need_no_csrf(session_client: AuthClient,
                                              headers: dict[str, str]) -> None:
    assert session_client.get("/auth/verify", headers=headers).status_code == 200


WS_PW = "websocket user passphrase"


async def ws_whoami(websocket: WebSocket) -> None:
    await websocket.accept()
    user = websocket.scope["user"]
    await websocket.send_json({"user": user.display_name if user.is_authenticated else None})
    await websocket.close()


@pytest.fixture(scope="module")
def ws_client(
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str, AuthGate]]:
    """A Starlette app with a websocket route behind AuthGateMiddleware, signed in by
    cookie; also a bearer token for the same user."""
    db = tmp_path_factory.mktemp("ws") / "ws.db"
    gate = AuthGate(Settings(database_url=f"sqlite:///{db}",
                             public_url="http://testserver", cookie_secure=False))
    app = Starlette(routes=[WebSocketRoute("/ws", ws_whoami), Mount("", app=gate.asgi_app)],
                    middleware=[Middleware(AuthGateMiddleware, gate=gate)],
                    lifespan=gate.lifespan)
    with TestClient(app) as tc:
        tc.portal.call(gate.users.create_user, "wsuser", WS_PW)  # type: ignore[union-attr]
        token = tc.post("/auth/token", data={"grant_type": "password", "username": "wsuser",
                                             "password": WS_PW}).json()["access_token"]
        assert tc.post("/auth/login", json={"username": "wsuser",
                                            "password": WS_PW}).status_code == 200
        yield tc, token, gate


def ws_user(tc: TestClient, headers: dict[str, str]) -> Any:
    with tc.websocket_connect("/ws", headers=headers) as ws:
        return ws.receive_json()["user"]


@pytest.mark.parametrize("headers", [
    {"Origin": EVIL}, {"Origin": "null"}, {"Origin": "http://testserver.evil.example"},
    {"Origin": "http://testserver", "Sec-Fetch-Site": "cross-site"}])
def test_h16_websocket_cookie_handshake_from_foreign_origin_refused(
        ws_client: tuple[TestClient, str, AuthGate], headers: dict[str, str]) -> None:
    tc = ws_client[0]
    with pytest.raises(WebSocketDenialResponse) as denied:
        ws_user(tc, headers)
    assert denied.value.status_code == 403
    assert denied.value.json()["error"] == "csrf"


@pytest.mark.parametrize("headers", [{"Origin": "http://testserver"}, {}],
                         ids=["same-origin", "no-origin"])
def test_h16_websocket_cookie_handshake_same_origin_accepted(
        ws_client: tuple[TestClient, str, AuthGate], headers: dict[str, str]) -> None:
    assert ws_user(ws_client[0], headers) == "wsuser"


def test_h16_websocket_bearer_handshake_is_not_origin_checked(
        ws_client: tuple[TestClient, str, AuthGate]) -> None:
    """The session cookie travels too, but the bearer token authenticates (contract §3)."""
    tc, token, _ = ws_client
    assert tc.cookies
    assert ws_user(tc, {"Origin": EVIL, "Authorization": f"Bearer {token}"}) == "wsuser"


def test_h16_websocket_refused_by_close_without_the_denial_extension(
        ws_client: tuple[TestClient, str, AuthGate]) -> None:
    """A server without the ASGI websocket denial extension: the handshake is closed
    before accept (the server answers 403) and the app never runs."""
    tc, _, gate = ws_client
    cookie = "; ".join(f"{k}={v}" for k, v in tc.cookies.items())
    gate_mw = AuthGateMiddleware(_never_called, gate=gate)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws", "raw_path": b"/ws", "query_string": b"",
             "headers": [(b"cookie", cookie.encode()), (b"origin", EVIL.encode())],
             "scheme": "ws", "server": ("testserver", 80), "client": ("127.0.0.1", 1),
             "subprotocols": [], "asgi": {"version": "3.0"}, "extensions": {}}
    tc.portal.call(gate_mw, scope, receive, send)  # type: ignore[union-attr]
    assert [m["type"] for m in sent] == ["websocket.close"]


async def _never_called(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the app must not see a refused handshake")


# -- h17: serve with an unreachable Redis -------------------------------------------------------

def test_h17_serve_with_unreachable_redis_is_one_line(tmp_path: Path) -> None:
    port = free_port()
    env = env_for({"database_url": f"sqlite:///{tmp_path / 'ag.db'}",
                   "redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    done = subprocess.run([AUTHGATE, "serve", "--port", str(port)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    one_line_error(done.stderr)
    assert "redis" in done.stderr.lower()
    assert "authgate serving" not in done.stdout + done.stderr


# -- h18: the OAuth endpoints answer RFC 6749 §5.2 codes ------------------------------------------

def post_raw(server: Server, path: str, body: bytes = b"", ctype: str | None = None,
             **kwargs: Any) -> httpx.Response:
    headers = {"Content-Type": ctype} if ctype else {}
    with httpx.Client(base_url=server.url, timeout=30) as c:
        return c.post(path, content=body, headers=headers, **kwargs)


@pytest.mark.parametrize("path", ["/auth/revoke", "/auth/token"])
@pytest.mark.parametrize(("body", "ctype"), [
    (b"", None),                                  # the reported case
    (b"token=abc", None),
    (b'{"token": "abc"}', "text/plain"),
    (b"token=abc", "multipart/form-data; boundary=x"),
    (b"<token>abc</token>", "application/xml"),
    (b"{", "application/json"),
    (b"[]", "application/json"),
    (b"\xff\xfe", "application/x-www-form-urlencoded"),
    (b"token=a&token=b", "application/x-www-form-urlencoded"),
    (b'{"token": "a", "extra": 1}', "application/json"),
])
def test_h18_oauth_endpoints_answer_invalid_request_for_malformed_requests(
        server: Server, path: str, body: bytes, ctype: str | None) -> None:
    oauth_error(post_raw(server, path, body, ctype), 400, "invalid_request")


@pytest.mark.parametrize("path", ["/auth/revoke", "/auth/token"])
def test_h18_oauth_endpoints_413_in_oauth_form(server: Server, path: str) -> None:
    big = b"token=" + b"a" * (64 * 1024)
    form = "application/x-www-form-urlencoded"
    oauth_error(post_raw(server, path, big, form), 413, "invalid_request")

    def chunks() -> Iterator[bytes]:  # no Content-Length: stopped while reading
        yield b"token="
        for _ in range(20):
            yield b"a" * 8192

    oauth_error(_post_stream(server, path, chunks(), form), 413, "invalid_request")


def _post_stream(server: Server, path: str, body: Iterator[bytes],
                 ctype: str) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        return c.post(path, content=body, headers={"Content-Type": ctype})


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@pytest.mark.parametrize("path", ["/auth/revoke", "/auth/token"])
def test_h18_oauth_endpoints_wrong_method_in_oauth_form(server: Server, path: str,
                                                        method: str) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.request(method, path)
    oauth_error(r, 405, "invalid_request")
    assert "POST" in r.headers["allow"]


def test_h18_other_endpoints_keep_their_415(server: Server) -> None:
    r = post_raw(server, "/auth/login", b"username=a&password=b",
                 "application/x-www-form-urlencoded")
    assert r.status_code == 415 and set(r.json()) == {"error", "detail"}
