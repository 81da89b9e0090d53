"""Many instances and workers behave like one: two ``authgate serve`` processes on one
PostgreSQL + Redis, and ``--workers N`` on SQLite and PostgreSQL. Every revocation made on one
is refused by the other within one second (the contract's bound)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server
from tests.helpers import AuthClient

BOUND = 1.0


def refused_within(check: Callable[[], int], bound: float = BOUND) -> float:
    """Poll ``check`` (a status code) until it is 401; return the seconds it took."""
    start = time.monotonic()
    while True:
        status = check()
        elapsed = time.monotonic() - start
        if status == 401:
            return elapsed
        assert status == 200, status
        assert elapsed < bound, f"still accepted after {elapsed:.3f} s"
        time.sleep(0.005)


@pytest.fixture
def pair(make_server: Callable[..., Server], pg_url: str, redis_settings: dict[str, str],
         tmp_path: Path) -> tuple[Server, Server]:
    shared = {"database_url": pg_url, **redis_settings}
    a = make_server(workdir=tmp_path, **shared)
    b = make_server(workdir=tmp_path, **shared, public_url=a.url)
    return a, b


def other(client: AuthClient, server: Server) -> AuthClient:
    """The same browser/API client, talking to another instance."""
    twin = server.client()
    twin.jar = client.jar
    twin.csrf = client.csrf
    return twin


def test_session_and_token_work_on_both_and_logout_reaches_the_other(
        pair: tuple[Server, Server]) -> None:
    a, b = pair
    name, pw = a.new_user("twin")
    on_a = a.client()
    assert on_a.login(name, pw).status_code == 200
    on_b = other(on_a, b)
    assert on_b.get("/auth/me").json()["username"] == name          # cookie from A on B
    token = on_a.token(name, pw).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{b.url}/auth/me", headers=bearer).status_code == 200

    assert on_a.unsafe("POST", "/auth/logout").status_code == 204
    took = refused_within(lambda: on_b.get("/auth/me").status_code)
    assert took < BOUND

    assert httpx.post(f"{a.url}/auth/revoke", data={"token": token}).status_code == 200
    refused_within(lambda: httpx.get(f"{b.url}/auth/me", headers=bearer).status_code)


def test_password_change_and_disable_reach_the_other(pair: tuple[Server, Server]) -> None:
    a, b = pair
    name, pw = a.new_user("twin")
    phone, laptop = a.client(), a.client()
    phone.login(name, pw)
    laptop.login(name, pw)
    token = phone.token(name, pw).json()["access_token"]
    laptop_on_b = other(laptop, b)
    assert laptop_on_b.get("/auth/me").status_code == 200
    assert httpx.get(f"{b.url}/auth/me",
                     headers={"Authorization": f"Bearer {token}"}).status_code == 200
    r = phone.unsafe("POST", "/auth/password",
                     json={"current_password": pw, "new_password": pw + " changed"})
    assert r.status_code == 204
    refused_within(lambda: laptop_on_b.get("/auth/me").status_code)

    fresh = b.client()
    fresh.login(name, pw + " changed")
    fresh_token = fresh.token(name, pw + " changed").json()["access_token"]
    on_a = other(fresh, a)
    assert on_a.get("/auth/me").status_code == 200
    assert b.cli("users", "disable", name).returncode == 0
    refused_within(lambda: on_a.get("/auth/me").status_code)
    refused_within(lambda: httpx.get(
        f"{a.url}/auth/me", headers={"Authorization": f"Bearer {fresh_token}"}).status_code)


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_workers_share_revocations(db: str, make_server: Callable[..., Server],
                                   request: pytest.FixtureRequest) -> None:
    settings = {"database_url": request.getfixturevalue("pg_url")} if db == "postgresql" else {}
    srv = make_server(workers=2, **settings)
    name, pw = srv.new_user("workers")
    c = srv.client()
    assert c.login(name, pw).status_code == 200
    token = c.token(name, pw).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}", "Cookie": ""}
    cookie = {"Cookie": "; ".join(f"{k}={v}" for k, v in c.jar.items())}
    for _ in range(20):  # a new connection each time: both workers answer
        with httpx.Client(base_url=srv.url) as h:
            assert h.get("/auth/me", headers=bearer).status_code == 200
            assert h.get("/auth/me", headers=cookie).status_code == 200
    assert c.unsafe("DELETE", "/auth/sessions").status_code == 204  # log out everywhere
    time.sleep(BOUND)
    for _ in range(40):  # by now every worker refuses both
        with httpx.Client(base_url=srv.url) as h:
            assert h.get("/auth/me", headers=bearer).status_code == 401
            assert h.get("/auth/me", headers=cookie).status_code == 401
