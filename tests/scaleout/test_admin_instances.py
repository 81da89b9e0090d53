"""The admin API on one instance, the user's requests on another (issue 14): disabling or
deleting a user, revoking one of their sessions or all of them through ``/admin/*`` ends
what it should on the other instance within the contract's 1 s. Two ``authgate serve``
processes on one PostgreSQL + Redis, and two on one SQLite file (its socket bus)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server
from tests.helpers import AuthClient
from tests.scaleout.test_instances import BOUND, other, refused_within

pytestmark = pytest.mark.subprocess  # two instances on one database

ADMIN = {"role_scopes": "admin=authgate:admin"}


@pytest.fixture(params=["sqlite", "postgresql+redis"])
def pair(request: pytest.FixtureRequest, make_server: Callable[..., Server],
         tmp_path: Path) -> tuple[Server, Server]:
    shared: dict[str, str] = dict(ADMIN)
    if request.param == "postgresql+redis":
        shared |= {"database_url": request.getfixturevalue("pg_url"),
                   **request.getfixturevalue("redis_settings")}
    a = make_server(workdir=tmp_path, **shared)
    b = make_server(workdir=tmp_path, **shared, public_url=a.url)
    return a, b


def admin_on(srv: Server) -> AuthClient:
    name, pw = srv.new_user("admin", roles=("admin",))
    c = srv.client()
    assert c.login(name, pw).status_code == 200
    return c


def signed_in_on(a: Server, b: Server) -> tuple[str, AuthClient, dict[str, str]]:
    """A fresh user signed in on A, used on B: (id, cookie client on B, bearer header)."""
    name, pw = a.new_user("twin")
    on_a = a.client()
    assert on_a.login(name, pw).status_code == 200
    uid = str(on_a.get("/auth/me").json()["id"])
    token = on_a.token(name, pw).json()["access_token"]
    on_b = other(on_a, b)
    bearer = {"Authorization": f"Bearer {token}"}
    assert on_b.get("/auth/me").status_code == 200
    assert httpx.get(f"{b.url}/auth/me", headers=bearer).status_code == 200
    return uid, on_b, bearer


def test_admin_actions_reach_the_other_instance(pair: tuple[Server, Server]) -> None:
    a, b = pair
    admin = admin_on(a)

    def bearer_on_b(bearer: dict[str, str]) -> int:
        return httpx.get(f"{b.url}/auth/me", headers=bearer).status_code

    # A role change: the access tokens issued before it end on B too.
    uid, on_b, bearer = signed_in_on(a, b)
    r = admin.unsafe("PATCH", f"/admin/users/{uid}", json={"roles": ["reports"]})
    assert r.status_code == 200, r.text
    assert refused_within(lambda: bearer_on_b(bearer)) < BOUND
    assert on_b.get("/auth/me").json()["roles"] == ["reports"]  # the session lives on

    # Disable.
    uid, on_b, bearer = signed_in_on(a, b)
    r = admin.unsafe("PATCH", f"/admin/users/{uid}", json={"disabled": True})
    assert r.status_code == 200, r.text
    assert refused_within(lambda: on_b.get("/auth/me").status_code) < BOUND
    assert refused_within(lambda: bearer_on_b(bearer)) < BOUND

    # Delete.
    uid, on_b, bearer = signed_in_on(a, b)
    assert admin.unsafe("DELETE", f"/admin/users/{uid}").status_code == 204
    assert refused_within(lambda: on_b.get("/auth/me").status_code) < BOUND
    assert refused_within(lambda: bearer_on_b(bearer)) < BOUND

    # Revoke one session: the cookie ends on B, the token family lives on.
    uid, on_b, bearer = signed_in_on(a, b)
    entries = admin.get(f"/admin/users/{uid}/sessions").json()
    [session] = [e for e in entries if e["kind"] == "session"]
    assert admin.unsafe("DELETE",
                        f"/admin/users/{uid}/sessions/{session['id']}").status_code == 204
    assert refused_within(lambda: on_b.get("/auth/me").status_code) < BOUND
    assert bearer_on_b(bearer) == 200

    # Revoke all: the access token too.
    assert admin.unsafe("DELETE", f"/admin/users/{uid}/sessions").status_code == 204
    assert refused_within(lambda: bearer_on_b(bearer)) < BOUND
