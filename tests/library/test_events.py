"""``AuthGate(..., on_event=fn)``: embedders get typed security events; a hook that fails
is logged and breaks nothing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from authgate import AuthGate, Settings
from authgate.events import CATALOGUE, AuthEvent

PW = "hooked user passphrase"


def _app(tmp_path: Path, hook: object) -> FastAPI:
    gate = AuthGate(Settings(database_url=f"sqlite:///{tmp_path / 'ev.db'}",
                             public_url="http://testserver", cookie_secure=False),
                    on_event=hook)  # type: ignore[arg-type]
    app = FastAPI(lifespan=gate.lifespan)
    app.include_router(gate.router)
    return app


def _wait(check: object, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_hooks_get_typed_events(tmp_path: Path) -> None:
    seen: list[AuthEvent] = []

    async def hook(event: AuthEvent) -> None:
        seen.append(event)

    with TestClient(_app(tmp_path, hook)) as c:
        assert c.post("/auth/register", json={"username": "hana", "password": PW}
                      ).status_code == 201
        assert c.post("/auth/login", json={"username": "hana", "password": "x" * 20}
                      ).status_code == 401
        assert c.post("/auth/login", json={"username": "hana", "password": PW}
                      ).status_code == 200
        assert _wait(lambda: len(seen) == 3)
    assert [e.type for e in seen] == ["user.created", "sign_in.failed", "sign_in.succeeded"]
    assert all(isinstance(e, AuthEvent) and e.type in CATALOGUE for e in seen)
    assert seen[2].user_id == seen[0].user_id and seen[2].data["method"] == "session"


def test_a_failing_hook_breaks_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                       ) -> None:
    calls: list[str] = []

    def hook(event: AuthEvent) -> None:
        calls.append(event.type)
        raise RuntimeError("the embedder's bug")

    with TestClient(_app(tmp_path, hook)) as c:
        assert c.post("/auth/register", json={"username": "ivo", "password": PW}
                      ).status_code == 201
        assert c.post("/auth/login", json={"username": "ivo", "password": PW}
                      ).status_code == 200
        assert _wait(lambda: len(calls) == 2)
    assert "on_event hook failed" in caplog.text
