"""Embedded FastAPI routes (issue 16): a session-only route's 401 does not invite a bearer
token, and ``gate.install_error_handlers(app)`` gives the contract's error shape."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import Depends, FastAPI
from starlette.testclient import TestClient

from authgate import AuthGate, Principal, Settings
from tests.helpers import random_cookie

LIMIT = Settings.model_fields["credential_guess_limit"].default  # the default's


def _app(tmp_path: Path, install: bool) -> tuple[FastAPI, AuthGate]:
    gate = AuthGate(Settings(database_url=f"sqlite:///{tmp_path / 'e.db'}",
                             public_url="http://testserver", cookie_secure=False))
    app = FastAPI(lifespan=gate.lifespan)
    app.include_router(gate.router)
    if install:
        gate.install_error_handlers(app)

    @app.get("/home")
    async def home(user: Principal = Depends(gate.session_user)) -> dict[str, str]:
        return {"user": user.username}

    @app.get("/api")
    async def api(user: Principal = Depends(gate.token_user)) -> dict[str, str]:
        return {"user": user.username}

    reader = gate.user(scopes=["reports:read"])

    @app.get("/reports")
    async def reports(user: Principal = Depends(reader)) -> dict[str, str]:
        return {"user": user.username}

    return app, gate


@pytest.fixture(params=[False, True], ids=["default", "installed"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TestClient, bool]]:
    app, _gate = _app(tmp_path, request.param)
    with TestClient(app) as c:
        yield c, request.param


def test_session_only_route_challenge_does_not_invite_a_bearer_token(
        client: tuple[TestClient, bool]) -> None:
    c, _ = client
    r = c.get("/home")
    assert r.status_code == 401
    challenge = r.headers["www-authenticate"]
    assert not challenge.lower().startswith("bearer")
    assert challenge.startswith("Cookie ") and 'form-action="/login"' in challenge
    assert c.get("/api").headers["www-authenticate"] == "Bearer"
    assert c.get("/reports").headers["www-authenticate"] == "Bearer"
    bad = c.get("/api", headers={"Authorization": "Bearer nope"})
    assert bad.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_error_shape(client: tuple[TestClient, bool]) -> None:
    c, installed = client
    for path in ("/home", "/api", "/reports"):
        body = c.get(path).json()
        if installed:
            assert set(body) == {"error", "detail"} and body["error"] == "unauthorized", body
        else:
            assert set(body) == {"detail"}, body  # FastAPI's own shape, left alone


def test_installed_handlers_keep_scope_errors_and_challenges(tmp_path: Path) -> None:
    app, _gate = _app(tmp_path, True)
    with TestClient(app) as c:
        assert c.post("/auth/register", json={"username": "rita",
                                              "password": "rita has a long passphrase"}
                      ).status_code == 201
        token = c.post("/auth/token", data={"grant_type": "password", "username": "rita",
                                            "password": "rita has a long passphrase"}
                       ).json()["access_token"]
        r = c.get("/reports", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"
        assert 'error="insufficient_scope"' in r.headers["www-authenticate"]


def test_a_guessing_address_gets_429_with_retry_after(client: tuple[TestClient, bool]) -> None:
    """SESS-24 in an embedding app: one random session cookie more than the default
    CREDENTIAL_GUESS_LIMIT from one address is a 429 with ``Retry-After``, in either error shape."""
    c, installed = client
    statuses = [c.get("/home", headers=random_cookie()).status_code for _ in range(LIMIT + 1)]
    assert statuses == [401] * LIMIT + [429]
    r = c.get("/home", headers=random_cookie())
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
    assert r.json() == ({"error": "too_many_requests", "detail": "Too many failed attempts; "
                         "try again later."} if installed
                        else {"detail": "Too many failed attempts; try again later."})
