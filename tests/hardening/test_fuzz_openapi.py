"""A short fuzz run of every operation in ``/openapi.json`` against a real ``authgate serve``
(schemathesis: inputs that fit the schema and inputs that do not, in every declared media
type, plus junk bodies): never a 5xx, never a traceback in the server's log.

Bounded for CI: 25 examples per operation and mode, no shrinking, a fixed seed
(derandomize), no example database. Every other request carries a valid bearer token so
that the routes behind authentication see the fuzzed bodies too (the token is minted again
if a fuzzed request logged it out)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode

from tests.blackbox.support import register
from tests.conftest import Server

MAX_EXAMPLES = 25
JUNK = [b"", b"{", b"[]", b"null", b'{"a":' * 64, b"\xff\xfe\x00", b"a=1&a=2", b"%zz=%",
        b'{"username": {"$ne": null}, "password": [1]}', b"=" * 512]
JUNK_TYPES = [None, "application/json", "application/x-www-form-urlencoded", "text/plain",
              "application/json; charset=latin-1", "multipart/form-data; boundary=zz"]
CRASH = re.compile(r"Traceback|unhandled error|Exception in ASGI application")


class Bearer:
    """A live access token for one fuzz user, minted again when a request revoked it."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.username, self.password, _ = register(server)
        self.token = ""
        assert self.renew()

    def renew(self) -> bool:
        """False when the fuzzing got this address throttled (its random logins are login
        failures): the rest of the run goes on without a live token."""
        with httpx.Client(base_url=self.server.url, timeout=30) as c:
            r = c.post("/auth/token", data={"grant_type": "password",
                                            "username": self.username,
                                            "password": self.password})
        assert r.status_code in (200, 429), r.text
        self.token = r.json()["access_token"] if r.status_code == 200 else "none"
        return r.status_code == 200


@pytest.fixture(scope="module")
def bearer(server: Server) -> Bearer:
    return Bearer(server)


@pytest.fixture(scope="module")
def api_schema(server: Server) -> Any:
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


def no_crash(server: Server, what: str, response: httpx.Response | Any) -> None:
    assert response.status_code < 500, (what, response.status_code, response.text)
    found = CRASH.search(server.log())
    assert found is None, (what, server.log()[max(0, found.start() - 200):found.end() + 2000])


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzz_openapi_no_server_error(api_schema: Any, server: Server, bearer: Bearer,
                                      mode: GenerationMode) -> None:
    """Every operation, inputs that fit the schema (positive) or break it (negative).
    (schemathesis' own pytest plugin does not run on this pytest, so Hypothesis drives
    its strategies here.)"""
    turn = itertools.count()
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10, [op.label for op in operations]

    def fuzz(operation: Any) -> None:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(deadline=None, max_examples=MAX_EXAMPLES, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def run(case: Case) -> None:
            headers = {"Authorization": f"Bearer {bearer.token}"} if next(turn) % 2 else None
            response = case.call(headers=headers, timeout=30)
            no_crash(server, f"{operation.label}: {case.method} {case.formatted_path}",
                     response)
            if headers is not None and response.status_code == 401 and bearer.token != "none":
                bearer.renew()  # a fuzzed logout-everywhere ended it

        try:
            run()
        except Unsatisfiable:  # nothing in it can break the schema (no parameters, no body)
            assert mode is GenerationMode.NEGATIVE, operation.label

    for operation in operations:
        fuzz(operation)


def json_and_form_operations(server: Server) -> Iterator[tuple[str, str]]:
    spec = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            content = op.get("requestBody", {}).get("content", {})
            if "{" not in path and content:
                yield method.upper(), path


def test_fuzz_openapi_junk_bodies(server: Server, bearer: Bearer) -> None:
    """Bodies no schema would produce, in every content type, on every operation that
    takes a body, with and without a credential."""
    operations = list(json_and_form_operations(server))
    assert {("POST", "/auth/token"), ("POST", "/auth/revoke"),
            ("POST", "/auth/login")} <= set(operations)
    operations.append(("POST", "/login"))  # the HTML form, not in the OpenAPI schema
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for (method, path), body, ctype in itertools.product(operations, JUNK, JUNK_TYPES):
            for auth in (False, True):
                headers = {"Content-Type": ctype} if ctype else {}
                if auth:
                    headers["Authorization"] = f"Bearer {bearer.token}"
                r = c.request(method, path, content=body, headers=headers)
                assert r.status_code < 500, (method, path, body, ctype, r.text)
                assert r.status_code not in (200, 303) or path == "/auth/revoke", (
                    method, path, body)
    no_crash(server, "junk bodies", httpx.Response(200))
