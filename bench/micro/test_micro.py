"""Micro-benchmarks of authgate's per-request work, each beside its physical floor.

    .venv/bin/pytest bench/micro --benchmark-only

(Not part of the normal test run: the repo's pytest ``testpaths`` is ``tests``.) Groups, in
pytest-benchmark's table:

* ``token-verify``: ``AccessTokens.verify`` (shape/header checks + PyJWT + claim checks) |
  PyJWT ``jwt.decode`` alone | raw Ed25519 verify with ``cryptography`` (the floor);
* ``token-warm``: ``Engine.token_principal`` on a token it has verified before | one dict
  look-up (the floor);
* ``session-warm``: ``Engine.session_principal`` on a cached session |
  ``ApiKeys.principal`` on a cached API key | SHA-256 of a 43-character value | one dict
  look-up (together, the floor);
* ``password-hash``: ``PasswordHasher.hash`` (Argon2id m=19456 KiB, t=2, p=1, in a worker
  thread) | ``argon2.low_level.hash_secret`` with the same parameters on this thread;
* ``asgi-request``: one whole request through the app ``authgate serve`` runs
  (``app_factory()``, started by its ASGI lifespan), no sockets: ``GET /auth/me`` with the
  cookie, with the bearer token, ``GET /.well-known/jwks.json``, ``GET /healthz`` | a bare
  Starlette and a bare FastAPI app with one route (the floors). Each call goes through
  ``loop.run_until_complete`` (the same few µs for every row).

The engine coroutines are driven synchronously (``coro.send(None)``): on the warm path they
must finish without suspending, i.e. without any I/O -- the benchmark fails otherwise. For
that the engine runs with ``session_touch_interval`` = 10^9 (no last-seen write) and its
revocation-freshness bound lifted (its watcher cannot run while the loop is blocked here).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import argon2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from authgate.engine import Engine
from authgate.passwords import PasswordHasher
from authgate.settings import Settings

PASSWORD = "correct horse battery staple!"


@dataclass
class Env:
    loop: asyncio.AbstractEventLoop
    engine: Engine
    token: str
    cookie: str
    api_key: str


def drive(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that must not suspend (no I/O) to completion, synchronously."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise AssertionError("the coroutine suspended: this path did I/O")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    db = Path(tmp_path_factory.mktemp("micro")) / "micro.db"
    loop = asyncio.new_event_loop()
    engine = Engine(Settings(database_url=f"sqlite:///{db}", session_touch_interval=10**9))

    async def setup() -> tuple[str, str, str]:
        await engine.start()
        alice = await engine.users.create_user("alice", PASSWORD)
        cookie, _rec, _user = await engine.sessions.login("alice", PASSWORD)
        pair = await engine.grants.password_grant("alice", PASSWORD)
        api_key, _ = await engine.api_keys.create(alice, "bench")
        await engine.sessions.session_principal(cookie)
        await engine.grants.token_principal(pair.access_token)
        await engine.api_keys.principal(api_key)
        return cookie, pair.access_token, api_key

    cookie, token, api_key = loop.run_until_complete(setup())
    engine.hot.stale_after = float("inf")
    try:
        yield Env(loop, engine, token, cookie, api_key)
    finally:
        loop.run_until_complete(engine.stop())
        loop.close()


# -- token verification ---------------------------------------------------------------------


@pytest.mark.benchmark(group="token-verify")
def test_access_tokens_verify(benchmark: Any, env: Env) -> None:
    now = time.time()
    claims = benchmark(env.engine.tokens.verify, env.token, now)
    assert claims["sub"]


@pytest.mark.benchmark(group="token-verify")
def test_pyjwt_decode_library(benchmark: Any, env: Env) -> None:
    tokens = env.engine.tokens
    kid = jwt.get_unverified_header(env.token)["kid"]
    key = tokens.keys.verifier(kid)
    assert key is not None
    options = {"require": ["iss", "sub", "aud", "exp", "iat", "jti"], "verify_exp": False,
               "verify_iat": False, "verify_nbf": False}
    claims = benchmark(jwt.decode, env.token, key.verifier, algorithms=["EdDSA"],
                       audience=tokens.audience, issuer=tokens.issuer, options=options)
    assert claims["sub"]


@pytest.mark.benchmark(group="token-verify")
def test_floor_ed25519_verify(benchmark: Any) -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    public = private.public_key()
    message = secrets.token_urlsafe(300).encode()  # about a JWT's signing input
    signature = private.sign(message)
    benchmark(public.verify, signature, message)


# -- warm checks ----------------------------------------------------------------------------


@pytest.mark.benchmark(group="token-warm")
def test_token_principal_warm(benchmark: Any, env: Env) -> None:
    principal = benchmark(lambda: drive(env.engine.grants.token_principal(env.token)))
    assert principal.auth == "token"


@pytest.mark.benchmark(group="token-warm")
def test_floor_dict_lookup_token(benchmark: Any, env: Env) -> None:
    table = {env.token: {"sub": "x"}}
    key = env.token
    benchmark(table.__getitem__, key)


@pytest.mark.benchmark(group="session-warm")
def test_session_principal_warm(benchmark: Any, env: Env) -> None:
    principal = benchmark(lambda: drive(env.engine.sessions.session_principal(env.cookie)))
    assert principal is not None and principal.auth == "session"


@pytest.mark.benchmark(group="session-warm")
def test_api_key_principal_warm(benchmark: Any, env: Env) -> None:
    principal = benchmark(lambda: drive(env.engine.api_keys.principal(env.api_key)))
    assert principal.auth == "api_key"


@pytest.mark.benchmark(group="session-warm")
def test_floor_sha256_43(benchmark: Any) -> None:
    value = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    assert len(value) == 43
    benchmark(lambda: hashlib.sha256(value.encode()).hexdigest())


@pytest.mark.benchmark(group="session-warm")
def test_floor_dict_lookup_session(benchmark: Any) -> None:
    key = hashlib.sha256(b"x").hexdigest()
    table = {hashlib.sha256(str(i).encode()).hexdigest(): i for i in range(1000)}
    table[key] = -1
    benchmark(table.__getitem__, key)


# -- passwords ------------------------------------------------------------------------------


@pytest.mark.benchmark(group="password-hash")
def test_password_hasher_hash(benchmark: Any, env: Env) -> None:
    hasher = PasswordHasher()

    def run() -> str:
        return env.loop.run_until_complete(hasher.hash(PASSWORD))

    assert benchmark.pedantic(run, rounds=15, iterations=1, warmup_rounds=1).startswith(
        "$argon2id$")


@pytest.mark.benchmark(group="password-hash")
def test_floor_argon2_same_parameters(benchmark: Any) -> None:
    def run() -> bytes:
        return argon2.low_level.hash_secret(
            PASSWORD.encode(), secrets.token_bytes(16), time_cost=2, memory_cost=19456,
            parallelism=1, hash_len=32, type=argon2.low_level.Type.ID)

    assert benchmark.pedantic(run, rounds=15, iterations=1, warmup_rounds=1).startswith(
        b"$argon2id$")


# -- one whole request, in process (no sockets) ----------------------------------------------


@dataclass
class Asgi:
    loop: asyncio.AbstractEventLoop
    app: Any
    cookie: str
    token: str


def asgi_call(loop: asyncio.AbstractEventLoop, app: Any, method: str, path: str,
              headers: list[tuple[bytes, bytes]] | None = None,
              body: bytes = b"") -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One request through an ASGI app (the HTTP server's parsing and sockets left out)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "",
             "headers": [(b"host", b"127.0.0.1:8000"), *(headers or [])],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    status = 0
    out_headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            out_headers.extend(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    loop.run_until_complete(app(scope, receive, send))
    return status, out_headers, b"".join(chunks)


def asgi_get(loop: asyncio.AbstractEventLoop, app: Any, path: str,
             headers: list[tuple[bytes, bytes]] | None = None) -> int:
    return asgi_call(loop, app, "GET", path, headers)[0]


@pytest.fixture(scope="module")
def asgi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Asgi]:
    """The app ``authgate serve`` runs (``app_factory``), started by its ASGI lifespan."""
    import json
    import os
    from urllib.parse import urlencode

    from authgate.web.app import app_factory

    url = f"sqlite:///{Path(tmp_path_factory.mktemp('asgi')) / 'asgi.db'}"
    loop = asyncio.new_event_loop()
    admin = Engine(Settings(database_url=url))

    async def make_user() -> None:
        await admin.start()
        await admin.users.create_user("alice", PASSWORD)
        await admin.stop()

    loop.run_until_complete(make_user())
    patch = pytest.MonkeyPatch()
    for name in [k for k in os.environ if k.startswith("AUTHGATE_")]:
        patch.delenv(name)
    patch.setenv("AUTHGATE_DATABASE_URL", url)
    patch.setenv("AUTHGATE_SESSION_TOUCH_INTERVAL", str(10**9))
    app = app_factory()
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def lifespan_send(message: dict[str, Any]) -> None:
        await outbox.put(message)

    lifespan = loop.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}},
                                    inbox.get, lifespan_send))

    async def event(kind: str) -> None:
        await inbox.put({"type": f"lifespan.{kind}"})
        reply = await outbox.get()
        assert reply["type"] == f"lifespan.{kind}.complete", reply

    loop.run_until_complete(event("startup"))
    try:
        status, headers, _ = asgi_call(loop, app, "POST", "/auth/login", [
            (b"content-type", b"application/json")],
            json.dumps({"username": "alice", "password": PASSWORD}).encode())
        assert status == 200
        cookie = next(v.decode().split(";")[0].split("=", 1)[1] for k, v in headers
                      if k == b"set-cookie")
        status, _, body = asgi_call(loop, app, "POST", "/auth/token", [
            (b"content-type", b"application/x-www-form-urlencoded")],
            urlencode({"grant_type": "password", "username": "alice",
                       "password": PASSWORD}).encode())
        assert status == 200
        yield Asgi(loop, app, cookie, json.loads(body)["access_token"])
    finally:
        loop.run_until_complete(event("shutdown"))
        loop.run_until_complete(lifespan)
        loop.close()
        patch.undo()


@pytest.mark.benchmark(group="asgi-request")
def test_asgi_me_session(benchmark: Any, asgi: Asgi) -> None:
    headers = [(b"cookie", f"__Host-authgate={asgi.cookie}".encode())]
    assert benchmark(asgi_get, asgi.loop, asgi.app, "/auth/me", headers) == 200


@pytest.mark.benchmark(group="asgi-request")
def test_asgi_me_bearer(benchmark: Any, asgi: Asgi) -> None:
    headers = [(b"authorization", f"Bearer {asgi.token}".encode())]
    assert benchmark(asgi_get, asgi.loop, asgi.app, "/auth/me", headers) == 200


@pytest.mark.benchmark(group="asgi-request")
def test_asgi_jwks(benchmark: Any, asgi: Asgi) -> None:
    assert benchmark(asgi_get, asgi.loop, asgi.app, "/.well-known/jwks.json") == 200


@pytest.mark.benchmark(group="asgi-request")
def test_asgi_healthz(benchmark: Any, asgi: Asgi) -> None:
    assert benchmark(asgi_get, asgi.loop, asgi.app, "/healthz") == 200


@pytest.mark.benchmark(group="asgi-request")
def test_floor_asgi_bare_starlette(benchmark: Any) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def public(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/public", public)])
    loop = asyncio.new_event_loop()
    try:
        assert benchmark(asgi_get, loop, app, "/public") == 200
    finally:
        loop.close()


@pytest.mark.benchmark(group="asgi-request")
def test_floor_asgi_bare_fastapi(benchmark: Any) -> None:
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    app = FastAPI()

    @app.get("/public", response_class=PlainTextResponse)
    async def public() -> str:
        return "ok"

    loop = asyncio.new_event_loop()
    try:
        assert benchmark(asgi_get, loop, app, "/public") == 200
    finally:
        loop.close()
