"""Issue 15: what FastAPI resolves per request for authgate's dependencies (the speed itself
is measured in bench/, never here). Each dependency is one resolution — the security
scheme is the dependency — while OpenAPI still declares the same schemes; ``any_user``
carries a second, inert declaration for the session scheme."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.testclient import TestClient

from authgate import AuthGate, Principal, Settings


def _app(tmp_path: Path) -> tuple[FastAPI, AuthGate]:
    gate = AuthGate(Settings(database_url=f"sqlite:///{tmp_path / 'd.db'}",
                             public_url="http://testserver", cookie_secure=False))
    app = FastAPI(lifespan=gate.lifespan)
    app.include_router(gate.router)
    reader = gate.user(scopes=["reports:read"])

    @app.get("/home")
    async def home(user: Principal = Depends(gate.session_user)) -> dict[str, str]:
        return {"user": user.username, "via": user.auth}

    @app.get("/api")
    async def api(user: Principal = Depends(gate.token_user)) -> dict[str, str]:
        return {"user": user.username, "via": user.auth}

    @app.get("/either")
    async def either(user: Principal = Depends(gate.any_user)) -> dict[str, str]:
        return {"user": user.username, "via": user.auth}

    @app.get("/reports")
    async def reports(user: Principal = Depends(reader)) -> dict[str, str]:
        return {"user": user.username, "via": user.auth}

    return app, gate


def _resolved(dependant: Dependant) -> int:
    """How many dependencies FastAPI solves for a route per request (below the endpoint)."""
    return sum(1 + _resolved(d) for d in dependant.dependencies)


def test_issue15_each_dependency_is_one_resolution(tmp_path: Path) -> None:
    app, _ = _app(tmp_path)
    routes = {r.path: r for r in app.routes if isinstance(r, APIRoute)}
    assert _resolved(routes["/home"].dependant) == 1
    assert _resolved(routes["/api"].dependant) == 1
    assert _resolved(routes["/reports"].dependant) == 2  # via="any", as /either
    assert _resolved(routes["/either"].dependant) == 2  # + the session scheme's declaration


def test_issue15_openapi_declares_the_same_schemes(tmp_path: Path) -> None:
    app, _ = _app(tmp_path)
    schema = app.openapi()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["session"] == {"type": "apiKey", "in": "cookie", "name": "authgate"}
    assert schemes["bearer"] == {"type": "oauth2", "flows": {
        "password": {"scopes": {}, "tokenUrl": "/auth/token"}}}
    paths = schema["paths"]
    assert paths["/home"]["get"]["security"] == [{"session": []}]
    assert paths["/api"]["get"]["security"] == [{"bearer": []}]
    assert paths["/reports"]["get"]["security"] == [{"bearer": []}, {"session": []}]
    assert paths["/either"]["get"]["security"] == [{"bearer": []}, {"session": []}]
    for path in ("/home", "/api", "/either", "/reports"):
        assert "parameters" not in paths[path]["get"]  # no request parameter leaks in


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, AuthGate]]:
    app, gate = _app(tmp_path)
    with TestClient(app) as c:
        yield c, gate


def test_issue15_any_user_takes_either_credential(client: tuple[TestClient, AuthGate]) -> None:
    c, _gate = client
    password = "a long enough passphrase"
    assert c.post("/auth/register", json={"username": "dora",
                                          "password": password}).status_code == 201
    assert c.get("/either").status_code == 401
    token = c.post("/auth/token", data={"grant_type": "password", "username": "dora",
                                        "password": password}).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert c.get("/either", headers=bearer).json() == {"user": "dora", "via": "token"}
    assert c.get("/reports", headers=bearer).status_code == 403  # no reports:read
    assert c.post("/auth/login", json={"username": "dora",
                                       "password": password}).status_code == 200
    assert c.get("/either").json() == {"user": "dora", "via": "session"}
    assert c.get("/home").json() == {"user": "dora", "via": "session"}
    assert c.get("/api").status_code == 401  # the session cookie is not a token
