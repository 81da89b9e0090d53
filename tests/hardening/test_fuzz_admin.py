"""The admin operations of ``/openapi.json`` fuzzed with an admin's bearer token (the
general fuzz run's token lacks ``authgate:admin``, so there every admin route stops at the
403 before reading its input): never a 5xx, never a traceback. The admin holds the role
``authgate:admin``, which grants the scope of the same name by default (no ROLE_SCOPES).
Bounded as the general run: 25 examples per operation and mode, a fixed seed."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode

from tests.conftest import Server
from tests.hardening.test_fuzz_openapi import JUNK, JUNK_TYPES, MAX_EXAMPLES, no_crash


@pytest.fixture(scope="module")
def admin_token(server: Server) -> str:
    name, pw = server.new_user("fuzzadmin", roles=("authgate:admin",))
    with server.client() as c:
        r = c.token(name, pw)
    assert r.status_code == 200, r.text
    assert "authgate:admin" in r.json()["scope"].split()
    return str(r.json()["access_token"])


def admin_operations(server: Server) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    found = [r.ok() for r in schema.get_all_operations()]
    return [op for op in found if op.path.startswith("/admin/")]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzz_admin_operations(server: Server, admin_token: str,
                               mode: GenerationMode) -> None:
    operations = admin_operations(server)
    assert len(operations) == 12, [op.label for op in operations]

    def fuzz(operation: Any) -> None:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(deadline=None, max_examples=MAX_EXAMPLES, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def run(case: Case) -> None:
            headers = {"Authorization": f"Bearer {admin_token}"}
            response = case.call(headers=headers, timeout=30)
            no_crash(server, f"{operation.label}: {case.method} {case.formatted_path}",
                     response)
            assert response.status_code != 401, (  # the admin token stays valid throughout
                operation.label, response.text)

        try:
            run()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, operation.label

    for operation in operations:
        fuzz(operation)


def test_junk_bodies_with_an_admin_token(server: Server, admin_token: str) -> None:
    headers = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=server.url, timeout=30) as c:
        uid = c.get("/auth/me", headers=headers).json()["id"]
        targets = [("POST", "/admin/users"), ("PATCH", f"/admin/users/{uid}"),
                   ("POST", f"/admin/users/{uid}/password")]
        for (method, path), body, ctype in itertools.product(targets, JUNK, JUNK_TYPES):
            sent = {**headers, **({"Content-Type": ctype} if ctype else {})}
            r = c.request(method, path, content=body, headers=sent)
            assert 400 <= r.status_code < 500, (method, path, body, ctype, r.text)
        assert c.get("/auth/me", headers=headers).status_code == 200
    no_crash(server, "junk bodies", httpx.Response(200))
