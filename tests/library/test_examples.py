"""The examples, driven over HTTP as a reader of the seed article would try them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.helpers import AuthClient
from tests.library.conftest import App

pytestmark = pytest.mark.subprocess  # the examples under uvicorn, as their docstrings run them


def _client(app: App) -> AuthClient:
    return AuthClient(app.url, app.settings)


def test_seed_app_flows(run_example: Callable[..., App]) -> None:
    app = run_example("seed_app")
    name, pw = app.user("alice")
    reader, _ = app.user("rita", "reports:read")
    c = _client(app)

    assert c.get("/home").status_code == 401                     # no cookie
    assert c.login(name, pw).status_code == 200
    home = c.get("/home")
    assert home.status_code == 200 and "alice" in home.json()["message"]
    assert c.get("/dashboard").status_code == 401                # cookie alone: not a token

    token = c.token(name, pw).json()["access_token"]
    bearer = {"Authorization": "Bearer " + token}                # the article's axios call
    dash = c.get("/dashboard", headers={**bearer, "Cookie": ""})
    assert dash.status_code == 200
    assert dash.json()["preferred_username"] == "alice"          # custom claim
    assert c.get("/home", headers={**bearer, "Cookie": ""}).status_code == 401

    denied = c.get("/reports", headers=bearer)
    assert denied.status_code == 403
    assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]
    r_token = c.token(reader, f"{reader} has a long passphrase").json()["access_token"]
    assert c.get("/reports", headers={"Authorization": f"Bearer {r_token}"}).status_code == 200

    assert c.unsafe("POST", "/auth/logout").status_code == 204
    assert c.get("/home").status_code == 401


def test_seed_app_openapi_declares_both_schemes(run_example: Callable[..., App]) -> None:
    app = run_example("seed_app")
    schema = _client(app).get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearer"]["type"] == "oauth2"
    assert schemes["bearer"]["flows"]["password"]["tokenUrl"] == "/auth/token"
    assert schemes["session"] == {"type": "apiKey", "in": "cookie", "name": "__Host-authgate"}
    assert schema["paths"]["/dashboard"]["get"]["security"] == [{"bearer": []}]
    assert schema["paths"]["/home"]["get"]["security"] == [{"session": []}]


def test_swagger_style_token_request(run_example: Callable[..., App]) -> None:
    """What Swagger UI's Authorize button posts (form, with an empty client_id)."""
    app = run_example("seed_app")
    name, pw = app.user("sam")
    r = _client(app).post("/auth/token", data={"grant_type": "password", "username": name,
                                               "password": pw, "scope": "", "client_id": ""})
    assert r.status_code == 200 and r.json()["token_type"] == "Bearer"


def test_hybrid_app(run_example: Callable[..., App]) -> None:
    app = run_example("hybrid_app")
    name, pw = app.user("hana", "notes:write")
    plain, plain_pw = app.user("pete")
    c = _client(app)
    first = c.get("/", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"].startswith("/login")
    c.login(name, pw)
    page = c.get("/")
    assert page.status_code == 200 and "Notes of hana" in page.text
    assert c.get("/api/notes").status_code == 401                 # pages' cookie is no token
    token = c.token(name, pw).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}", "Cookie": ""}
    assert c.post("/api/notes", json={"text": "hi"}, headers=bearer).status_code == 201
    assert c.get("/api/notes", headers=bearer).json() == ["hi"]
    other = c.token(plain, plain_pw).json()["access_token"]
    assert c.post("/api/notes", json={"text": "x"},
                  headers={"Authorization": f"Bearer {other}"}).status_code == 403
    assert c.get("/login").status_code == 200                    # the pages are mounted


def test_starlette_app(run_example: Callable[..., App]) -> None:
    app = run_example("starlette_app")
    name, pw = app.user("stella")
    c = _client(app)
    assert c.get("/whoami").status_code == 401                    # API: 401, not 403
    page = c.get("/", follow_redirects=False)                      # page: to the login form
    assert page.status_code in (303, 307) and "/login" in page.headers["location"]
    assert c.get("/login").status_code == 200                      # gate.pages are mounted
    assert c.login(name, pw).status_code == 200                    # gate.asgi_app: /auth/*
    assert c.get("/whoami").json()["user"] == name
    assert c.get("/").json() == {"hello": name}
    assert c.get("/.well-known/jwks.json").json()["keys"]
