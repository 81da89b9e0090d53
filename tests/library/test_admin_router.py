"""``gate.admin_router`` in an app that embeds authgate (issue 14): opt-in (``gate.router``
has no ``/admin/*``), and once included it answers the contract's errors and works with an
admin's token, whatever exception handlers the app has."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.testclient import TestClient

from authgate import AuthGate, Settings


def test_the_admin_router_is_opt_in_and_works_embedded(tmp_path: Path) -> None:
    gate = AuthGate(Settings(database_url=f"sqlite:///{tmp_path / 'e.db'}",
                             public_url="http://127.0.0.1", cookie_secure=False,
                             password_hash_preset="test",
                             role_scopes={"ops": ["authgate:admin"]}))
    assert not any(getattr(r, "path", "").startswith("/admin") for r in gate.router.routes)
    app = FastAPI(lifespan=gate.lifespan)
    app.include_router(gate.router)
    app.include_router(gate.admin_router)
    with TestClient(app) as c:
        r = c.get("/admin/users")
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        for name, roles in (("ops-person", ["ops"]), ("plain-person", [])):
            assert c.portal is not None
            c.portal.call(gate.users.create_user, name, "a long enough passphrase", roles)
        tokens = {}
        for name in ("ops-person", "plain-person"):
            t = c.post("/auth/token", data={"grant_type": "password", "username": name,
                                            "password": "a long enough passphrase"})
            tokens[name] = {"Authorization": f"Bearer {t.json()['access_token']}"}
        r = c.get("/admin/users", headers=tokens["plain-person"])
        assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"
        r = c.get("/admin/users", headers=tokens["ops-person"])
        assert r.status_code == 200
        assert sorted(u["username"] for u in r.json()["users"]) == ["ops-person",
                                                                     "plain-person"]
        r = c.get("/admin/users", params={"limit": "nope"}, headers=tokens["ops-person"])
        assert r.status_code == 400 and r.json()["error"] == "invalid_request"
        r = c.post("/admin/users", json={"username": 1}, headers=tokens["ops-person"])
        assert r.status_code == 400 and set(r.json()) == {"error", "detail"}
