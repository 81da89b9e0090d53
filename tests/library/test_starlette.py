"""A plain Starlette app with AuthGateMiddleware: request.user, request.auth.scopes and
starlette.authentication.requires work as with Starlette's own backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from authgate import AuthGate, AuthGateMiddleware, Settings
from tests.helpers import random_cookie

LIMIT = Settings.model_fields["credential_guess_limit"].default  # the default's

PW = "starlette user passphrase"


@requires("authenticated", status_code=401)
async def whoami(request: Request) -> Response:
    return JSONResponse({"user": request.user.display_name, "id": request.user.identity,
                         "scopes": request.auth.scopes, "via": request.user.auth})


@requires(["authenticated", "reports:read"], status_code=403)
async def reports(request: Request) -> Response:
    return JSONResponse({"ok": True})


@requires("authenticated", status_code=401)
async def note(request: Request) -> Response:
    return JSONResponse({"saved_for": request.user.display_name})


async def anyone(request: Request) -> Response:
    return JSONResponse({"authenticated": request.user.is_authenticated})


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, AuthGate]]:
    gate = AuthGate(Settings(database_url=f"sqlite:///{tmp_path / 's.db'}",
                             public_url="http://testserver", cookie_secure=False))
    app = Starlette(
        routes=[Route("/whoami", whoami), Route("/reports", reports), Route("/", anyone),
                Route("/note", note, methods=["POST"]),
                Mount("", app=gate.asgi_app)],
        middleware=[Middleware(AuthGateMiddleware, gate=gate)],
        lifespan=gate.lifespan)
    with TestClient(app) as tc:
        tc.portal.call(gate.users.create_user, "ann", PW, ["reports:read"])  # type: ignore[union-attr]
        tc.portal.call(gate.users.create_user, "ben", PW)  # type: ignore[union-attr]
        yield tc, gate


def test_anonymous(client: tuple[TestClient, AuthGate]) -> None:
    tc, _ = client
    assert tc.get("/").json() == {"authenticated": False}
    assert tc.get("/whoami").status_code == 401


def test_session_fills_request_user(client: tuple[TestClient, AuthGate]) -> None:
    tc, _ = client
    assert tc.post("/auth/login", json={"username": "ann", "password": PW}).status_code == 200
    body = tc.get("/whoami").json()
    assert body["user"] == "ann" and body["via"] == "session"
    assert "reports:read" in body["scopes"] and "authenticated" in body["scopes"]
    assert tc.get("/reports").status_code == 200


def test_bearer_and_scopes(client: tuple[TestClient, AuthGate]) -> None:
    tc, _ = client
    token = tc.post("/auth/token", data={"grant_type": "password", "username": "ben",
                                         "password": PW}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert tc.get("/whoami", headers=headers).json()["via"] == "token"
    assert tc.get("/reports", headers=headers).status_code == 403
    bad = tc.get("/whoami", headers={"Authorization": "Bearer nope.nope.nope"})
    assert bad.status_code == 401  # a refused token leaves an anonymous user


def test_cookie_authenticated_unsafe_request_needs_csrf(
        client: tuple[TestClient, AuthGate]) -> None:
    tc, _ = client
    csrf = tc.post("/auth/login", json={"username": "ann", "password": PW}).json()["csrf_token"]
    assert tc.post("/note").status_code == 403
    assert tc.post("/note", headers={"X-CSRF-Token": "wrong"}).status_code == 403
    ok = tc.post("/note", headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200 and ok.json() == {"saved_for": "ann"}


def test_a_guessing_address_is_refused_429_by_the_middleware(
        client: tuple[TestClient, AuthGate]) -> None:
    """SESS-24: random session cookies leave an anonymous user (401 from ``@requires``) up
    to CREDENTIAL_GUESS_LIMIT; after that the middleware answers 429 itself, before the
    route, while the same client's valid session keeps working."""
    tc, _ = client
    assert tc.post("/auth/login", json={"username": "ann", "password": PW}).status_code == 200
    valid = tc.cookies["authgate"]
    tc.cookies.clear()
    statuses = [tc.get("/whoami", headers=random_cookie()).status_code for _ in range(LIMIT + 1)]
    assert statuses == [401] * LIMIT + [429]
    assert tc.get("/whoami", headers={"Cookie": f"authgate={valid}"}).json()["user"] == "ann"
