"""API keys in an embedding app: the FastAPI dependencies (``gate.token_user``,
``gate.any_user``, ``gate.user(scopes=…)``) and the Starlette middleware take an ``ag_``
bearer, with ``Principal.auth == "api_key"``; a session-only route and step-up refuse it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from authgate import AuthGate, AuthGateMiddleware, Principal, Settings

PW = "api key user passphrase"


def _settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'k.db'}",
                    public_url="http://testserver", cookie_secure=False)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, AuthGate]]:
    gate = AuthGate(_settings(tmp_path))
    api = FastAPI(lifespan=gate.lifespan)
    api.include_router(gate.router)
    gate.install_error_handlers(api)

    def body(p: Principal) -> dict[str, Any]:
        return {"user": p.username, "auth": p.auth, "scopes": list(p.scopes),
                "key": p.api_key.name if p.api_key else None}

    @api.get("/token")
    async def token(p: Principal = Depends(gate.token_user)) -> dict[str, Any]:
        return body(p)

    @api.get("/any")
    async def any_(p: Principal = Depends(gate.any_user)) -> dict[str, Any]:
        return body(p)

    @api.get("/session")
    async def session(p: Principal = Depends(gate.session_user)) -> dict[str, Any]:
        return body(p)

    needs_reports = gate.user(scopes=["reports:read"])
    needs_billing = gate.user(scopes=["billing"])
    recent = gate.user(max_age=300)

    @api.get("/reports")
    async def reports(p: Principal = Depends(needs_reports)) -> dict[str, Any]:
        return body(p)

    @api.get("/billing")
    async def billing(p: Principal = Depends(needs_billing)) -> dict[str, Any]:
        return body(p)

    @api.get("/sensitive")
    async def sensitive(p: Principal = Depends(recent)) -> dict[str, Any]:
        return body(p)

    with TestClient(api) as tc:
        tc.portal.call(gate.users.create_user, "ann", PW,  # type: ignore[union-attr]
                       ["reports:read", "billing"])
        yield tc, gate


def _key(tc: TestClient, **body: Any) -> str:
    r = tc.post("/auth/login", json={"username": "ann", "password": PW})
    assert r.status_code == 200, r.text
    csrf = r.json()["csrf_token"]
    made = tc.post("/auth/api-keys", json={"name": "lib", **body},
                   headers={"X-CSRF-Token": csrf})
    assert made.status_code == 201, made.text
    tc.cookies.clear()
    return str(made.json()["key"])


def test_dependencies_take_an_api_key(app: tuple[TestClient, AuthGate]) -> None:
    tc, _ = app
    key = _key(tc, scopes=["reports:read"])
    h = {"Authorization": f"Bearer {key}"}
    for path in ("/token", "/any", "/reports"):
        r = tc.get(path, headers=h)
        assert r.status_code == 200, (path, r.text)
        assert r.json() == {"user": "ann", "auth": "api_key", "scopes": ["reports:read"],
                            "key": "lib"}
    r = tc.get("/billing", headers=h)  # a scope the user has, but not this key
    assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"
    r = tc.get("/session", headers=h)  # sessions only: a bearer is no session
    assert r.status_code == 401
    r = tc.get("/sensitive", headers=h)  # step-up: a key is no recent sign-in
    assert r.status_code == 401
    assert "insufficient_user_authentication" in r.headers["www-authenticate"]


def test_dependencies_refuse_a_revoked_key_at_once(app: tuple[TestClient, AuthGate]) -> None:
    tc, gate = app
    key = _key(tc)
    h = {"Authorization": f"Bearer {key}"}
    assert tc.get("/token", headers=h).status_code == 200
    assert tc.portal.call(gate.engine.api_keys.revoke_key, key)  # type: ignore[union-attr]
    for path in ("/token", "/any", "/reports"):
        r = tc.get(path, headers=h)
        assert r.status_code == 401 and r.json()["error"] == "invalid_token", r.text
        assert 'error="invalid_token"' in r.headers["www-authenticate"]


@requires("authenticated", status_code=401)
async def whoami(request: Request) -> Response:
    return JSONResponse({"user": request.user.display_name, "via": request.user.auth,
                         "scopes": request.auth.scopes})


@requires(["authenticated", "billing"], status_code=403)
async def billing(request: Request) -> Response:
    return JSONResponse({"ok": True})


def test_starlette_middleware_takes_an_api_key(tmp_path: Path) -> None:
    gate = AuthGate(_settings(tmp_path))
    app = Starlette(routes=[Route("/whoami", whoami), Route("/billing", billing),
                            Mount("", app=gate.asgi_app)],
                    middleware=[Middleware(AuthGateMiddleware, gate=gate)],
                    lifespan=gate.lifespan)
    with TestClient(app) as tc:
        tc.portal.call(gate.users.create_user, "ann", PW,  # type: ignore[union-attr]
                       ["reports:read", "billing"])
        key = _key(tc, scopes=["reports:read"])
        h = {"Authorization": f"Bearer {key}"}
        r = tc.get("/whoami", headers=h)
        assert r.status_code == 200, r.text
        assert r.json() == {"user": "ann", "via": "api_key",
                            "scopes": ["authenticated", "reports:read"]}
        assert tc.get("/billing", headers=h).status_code == 403
        tc.portal.call(gate.engine.api_keys.revoke_key, key)  # type: ignore[union-attr]
        assert tc.get("/whoami", headers=h).status_code == 401
