"""The library's step-up dependencies (RFC 9470): ``gate.user(mfa=True)`` and
``gate.user(max_age=N)`` inside an app of one's own, through FastAPI's TestClient, with
the TOTP codes an authenticator app would show (the gate's clock is a ManualClock)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from fastapi import Depends, FastAPI
from starlette.testclient import TestClient

from authgate import AuthGate, Principal, Settings
from authgate.clock import ManualClock

PASSWORD = "a long enough passphrase here"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, ManualClock]]:
    clock = ManualClock(time.time())
    gate = AuthGate(Settings(database_url=f"sqlite:///{tmp_path / 's.db'}",
                             public_url="http://localhost", cookie_secure=False,
                             password_hash_preset="test"), clock=clock)
    api = FastAPI(lifespan=gate.lifespan)
    api.include_router(gate.router)
    gate.install_error_handlers(api)
    strong, recent = gate.user(mfa=True), gate.user(max_age=60, via="session")

    @api.get("/admin")
    async def admin(user: Principal = Depends(strong)) -> dict[str, object]:
        return {"user": user.username, "amr": list(user.amr), "mfa": user.mfa}

    @api.get("/recent")
    async def recent_route(user: Principal = Depends(recent)) -> dict[str, object]:
        return {"user": user.username, "auth_time": user.auth_time}

    with TestClient(api, base_url="http://localhost") as c:
        yield c, clock


def test_mfa_route_challenges_a_password_only_sign_in(
        app: tuple[TestClient, ManualClock]) -> None:
    c, clock = app
    assert c.post("/auth/register", json={"username": "ann", "password": PASSWORD}
                  ).status_code == 201
    r = c.post("/auth/login", json={"username": "ann", "password": PASSWORD})
    assert r.status_code == 200
    csrf = {"X-CSRF-Token": r.json()["csrf_token"], "Origin": "http://localhost"}
    r = c.get("/admin")
    assert r.status_code == 401
    assert r.json()["error"] == "insufficient_user_authentication"
    assert r.headers["www-authenticate"].startswith(
        'Bearer error="insufficient_user_authentication", error_description="')
    assert 'acr_values="mfa"' in r.headers["www-authenticate"]
    # a browser asking for the page is sent to sign in again and come back
    r = c.get("/admin?tab=2", headers={"Accept": "text/html,application/xhtml+xml"},
              follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Fadmin%3Ftab%3D2&reauth=1"
    token = c.post("/auth/token", data={"grant_type": "password", "username": "ann",
                                        "password": PASSWORD}).json()["access_token"]
    assert c.get("/admin", headers={"Authorization": f"Bearer {token}"}).status_code == 401

    # enrol, then sign in with the second factor: the same route lets the caller in
    r = c.post("/auth/mfa/totp", json={"current_password": PASSWORD}, headers=csrf)
    totp = pyotp.TOTP(r.json()["secret"])
    r = c.post("/auth/mfa/totp/confirm", json={"code": totp.at(clock.now())}, headers=csrf)
    assert r.status_code == 200, r.text
    r = c.post("/auth/login", json={"username": "ann", "password": PASSWORD})
    assert r.status_code == 401 and r.json()["error"] == "mfa_required"
    clock.advance(30)
    r = c.post("/auth/login/mfa", json={"mfa_token": r.json()["mfa_token"],
                                        "code": totp.at(clock.now())})
    assert r.status_code == 200, r.text
    assert c.get("/admin").json() == {"user": "ann", "amr": ["pwd", "otp", "mfa"],
                                      "mfa": True}
    r = c.post("/auth/token", data={"grant_type": "password", "username": "ann",
                                    "password": PASSWORD})
    assert r.status_code == 403
    clock.advance(30)
    r = c.post("/auth/token", data={"grant_type": "urn:authgate:grant-type:mfa",
                                    "mfa_token": r.json()["mfa_token"],
                                    "code": totp.at(clock.now())})
    token = r.json()["access_token"]
    assert c.get("/admin", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_max_age_route_wants_a_recent_sign_in(app: tuple[TestClient, ManualClock]) -> None:
    c, clock = app
    assert c.post("/auth/register", json={"username": "bob", "password": PASSWORD}
                  ).status_code == 201
    assert c.post("/auth/login", json={"username": "bob", "password": PASSWORD}
                  ).status_code == 200
    r = c.get("/recent")
    assert r.status_code == 200 and abs(r.json()["auth_time"] - clock.now()) < 2
    clock.advance(61)
    r = c.get("/recent")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].endswith("max_age=60")
    assert "acr_values" not in r.headers["www-authenticate"]
    # signing in again makes it recent
    assert c.post("/auth/login", json={"username": "bob", "password": PASSWORD}
                  ).status_code == 200
    assert c.get("/recent").status_code == 200


def test_bad_max_age_is_refused_at_build_time(tmp_path: Path) -> None:
    gate = AuthGate(Settings(database_url=f"sqlite:///{tmp_path / 'b.db'}"))
    for bad in (-1, "60", True):
        with pytest.raises(ValueError):
            gate.user(max_age=bad)  # type: ignore[arg-type]
