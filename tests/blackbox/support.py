"""Small helpers shared by the black-box tests (HTTP only; no server internals)."""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.conftest import Server
from tests.helpers import AuthClient, cookie_attrs

B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
ARGON2_PREFIX = "$argon2id$v=19$m=19456,t=2,p=1$"
EVIL = "https://evil.example"


def new_name(prefix: str = "bb") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def new_password() -> str:
    return f"bb pass {uuid.uuid4().hex} phrase"


def register(server: Server, username: str | None = None,
             password: str | None = None) -> tuple[str, str, str]:
    """Register over HTTP (fast; open registration must be on): (username, password, id)."""
    username = username or new_name()
    password = password or new_password()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.post("/auth/register", json={"username": username, "password": password})
    assert r.status_code == 201, r.text
    return username, password, r.json()["id"]


def signed_in(server: Server, username: str | None = None, password: str | None = None,
              remember: bool = False, **client_kwargs: Any) -> tuple[AuthClient, str, str]:
    """A client logged in as a fresh (or the given) user: (client, username, password)."""
    if username is None or password is None:
        username, password, _ = register(server)
    c = server.client(**client_kwargs)
    r = c.login(username, password, remember=remember)
    assert r.status_code == 200, r.text
    assert c.session_value, r.headers
    return c, username, password


def login_value(server: Server, username: str, password: str) -> str:
    """The session cookie value of a fresh login."""
    c = server.client()
    r = c.login(username, password)
    assert r.status_code == 200, r.text
    value = c.session_value
    c.close()
    assert value
    return value


def cookie_header(client: AuthClient, value: str) -> dict[str, str]:
    return {"Cookie": f"{client.session_cookie}={value}"}


def me_status(client: AuthClient, value: str | None = None) -> int:
    """GET /auth/me with the client's session cookie (or ``value`` instead)."""
    if value is None:
        return client.get("/auth/me").status_code
    return client.get("/auth/me", headers=cookie_header(client, value)).status_code


def session_cookie_attrs(response: httpx.Response, name: str) -> dict[str, str]:
    attrs = cookie_attrs(response, name)
    assert attrs is not None, f"no Set-Cookie {name}: {response.headers.get_list('set-cookie')}"
    return attrs


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    """The contract's error body: exactly {"error", "detail"} with strings."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers.get("content-type", "").startswith("application/json")
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error", "detail"}, body
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["detail"], str) and body["detail"]
    if code is not None:
        assert body["error"] == code, body


def b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def parse_utc(value: Any) -> datetime:
    """An ISO 8601 timestamp that is explicitly UTC."""
    assert isinstance(value, str), value
    assert value.endswith(("Z", "+00:00")), value
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    offset = parsed.utcoffset()
    assert offset is not None and offset.total_seconds() == 0
    return parsed.astimezone(UTC)


def eventually(check: Callable[[], bool], within: float = 1.0, step: float = 0.05) -> bool:
    """True as soon as ``check()`` is; False if it never is within ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


def one_line_error(stderr: str) -> None:
    """The CLI failure contract: one clear line on stderr, no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    assert len(lines[0]) > 10, stderr
