"""API keys on two instances (issue 14): a key made on one works on the other, and a
revocation (of the key, or of its user) made on one is refused by the other within 1 s —
on PostgreSQL + Redis and on one SQLite file (the socket bus)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server
from tests.scaleout import test_faults
from tests.scaleout.test_faults import PrivatePostgres, PrivateRedis, wait_for
from tests.scaleout.test_instances import BOUND, other, refused_within

# test_faults' private Redis and PostgreSQL (each test its own), as fixtures of this module.
private_redis_server = test_faults.private_redis
private_pg_cluster = test_faults.private_pg

pytestmark = pytest.mark.subprocess  # two instances on one database

#: The database log is polled every second at most: only the bus explains a fast refusal.
SLOW_POLL = {"revocation_poll_interval": 1.0}


@pytest.fixture(params=["postgresql+redis", "sqlite"])
def pair(request: pytest.FixtureRequest, make_server: Callable[..., Server],
         tmp_path: Path) -> tuple[Server, Server]:
    if request.param == "sqlite":
        shared: dict[str, str] = {"database_url": f"sqlite:///{tmp_path / 'shared.db'}"}
    else:
        shared = {"database_url": request.getfixturevalue("pg_url"),
                  **request.getfixturevalue("redis_settings")}
    a = make_server(workdir=tmp_path, **shared, **SLOW_POLL)
    b = make_server(workdir=tmp_path, **shared, **SLOW_POLL, public_url=a.url)
    return a, b


def status(srv: Server, key: str) -> int:
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        return c.get("/auth/me", headers={"Authorization": f"Bearer {key}"}).status_code


def test_key_revoked_on_one_instance_is_refused_on_the_other(
        pair: tuple[Server, Server]) -> None:
    a, b = pair
    name, pw = a.new_user("keys")
    on_a = a.client()
    assert on_a.login(name, pw).status_code == 200
    made = on_a.unsafe("POST", "/auth/api-keys", json={"name": "twin"})
    assert made.status_code == 201, made.text
    key, key_id = made.json()["key"], made.json()["id"]
    assert status(b, key) == 200  # B has it cached now
    assert status(a, key) == 200
    on_b = other(on_a, b)
    assert key_id in {e["id"] for e in on_b.get("/auth/sessions").json()}
    assert on_a.unsafe("DELETE", f"/auth/api-keys/{key_id}").status_code == 204
    took = refused_within(lambda: status(b, key))
    assert took < BOUND


def test_disabling_the_user_on_one_instance_stops_keys_on_the_other(
        pair: tuple[Server, Server]) -> None:
    a, b = pair
    name, pw = a.new_user("keys")
    on_a = a.client()
    assert on_a.login(name, pw).status_code == 200
    key = on_a.unsafe("POST", "/auth/api-keys", json={"name": "twin"}).json()["key"]
    assert status(b, key) == 200
    assert a.cli("users", "disable", name).returncode == 0
    refused_within(lambda: status(b, key))


def _key(srv: Server) -> dict[str, str]:
    name, pw = srv.new_user("fault")
    c = srv.client()
    assert c.login(name, pw).status_code == 200
    made = c.unsafe("POST", "/auth/api-keys", json={"name": "fault"})
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['key']}"}


def test_api_keys_fail_closed_when_redis_or_postgres_is_down(
        make_server: Callable[..., Server], private_redis_server: PrivateRedis,
        private_pg_cluster: PrivatePostgres) -> None:
    """A key this process holds in memory is not trusted once revocations could be missed:
    503 while the backend is away, 200 again when it is back, and no traceback."""
    private_redis, private_pg = private_redis_server, private_pg_cluster
    srv = make_server(database_url=private_pg.url,
                      redis_url=f"redis://127.0.0.1:{private_redis.port}/0")
    key = _key(srv)
    me = f"{srv.url}/auth/me"
    assert httpx.get(me, headers=key).status_code == 200
    private_redis.stop()
    wait_for(lambda: httpx.get(me, headers=key).status_code == 503)
    assert httpx.get(me, headers=key).json()["error"] == "unavailable"
    private_redis.start()
    wait_for(lambda: httpx.get(me, headers=key).status_code == 200)
    private_pg.stop()
    wait_for(lambda: httpx.get(me, headers=key).status_code == 503)
    private_pg.start()
    wait_for(lambda: httpx.get(me, headers=key).status_code == 200, timeout=20)
    assert "Traceback" not in srv.log()
