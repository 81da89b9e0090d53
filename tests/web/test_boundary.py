"""The server's error boundary around the hardening layer, in-process: every exception
becomes the contract's JSON error once, or one log line once the response has started."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
from starlette.types import Receive, Scope, Send

from authgate.errors import Throttled
from authgate.logs import RequestIdFilter
from authgate.web.app import Hardening
from authgate.web.boundary import ErrorBoundary
from authgate.web.parsing import MAX_BODY

App = Callable[[Scope, Receive, Send], Awaitable[None]]


def served(inner: App) -> httpx.AsyncClient:
    hardening = Hardening(inner, hsts=False)
    app = ErrorBoundary(hardening, headers=hardening.extra)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def crashing(before: bool = True, status: int = 200) -> App:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if not before:
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b"answered"})
        raise ValueError("a secret detail")

    return app


async def test_passes_answers_through() -> None:
    async with served(ok) as c:
        r = await c.get("/x")
    assert r.status_code == 200 and r.text == "ok"
    assert r.headers["x-content-type-options"] == "nosniff" and "x-request-id" in r.headers


async def test_an_exception_before_the_response_is_a_json_500_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="authgate"):
        async with served(crashing()) as c:
            r = await c.get("/auth/me")
    assert r.status_code == 500
    assert r.json() == {"error": "internal", "detail": "internal error"}
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert [x.getMessage() for x in caplog.records] == [
        "unhandled error on GET /auth/me: ValueError"]


async def test_an_auth_error_that_escapes_is_the_contract_error() -> None:
    async def throttled(scope: Scope, receive: Receive, send: Send) -> None:
        raise Throttled(9)

    async with served(throttled) as c:
        r = await c.post("/auth/token")
    assert r.status_code == 429 and r.headers["retry-after"] == "9"
    assert set(r.json()) == {"error", "error_description"}  # an OAuth endpoint


async def test_an_exception_after_the_response_started_is_one_log_line(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="authgate"):
        async with served(crashing(before=False)) as c:
            r = await c.get("/x")
    assert r.status_code == 200 and r.text == "answered"
    assert [x.getMessage() for x in caplog.records] == [
        "unhandled error on GET /x after its response started: ValueError"]


async def test_an_answered_500_is_not_logged_again(caplog: pytest.LogCaptureFixture) -> None:
    """FastAPI's last exception handler answers (through to_response, which logs), then
    Starlette re-raises the exception: the boundary only swallows it."""
    with caplog.at_level(logging.ERROR, logger="authgate"):
        async with served(crashing(before=False, status=500)) as c:
            r = await c.get("/x")
    assert r.status_code == 500 and not caplog.records


@pytest.mark.parametrize(("path", "headers", "status", "body"), [
    ("/auth/login", {"content-length": str(MAX_BODY + 1)}, 413,
     {"error": "payload_too_large", "detail": "The request body is larger than 64 KiB."}),
    ("/auth/token", {"content-length": str(MAX_BODY + 1)}, 413,
     {"error": "invalid_request", "error_description": "The request body is larger than 64 KiB."}),
    ("/auth/login", {"content-length": "abc"}, 400,
     {"error": "invalid_request", "detail": "invalid Content-Length"}),
    ("/auth/me", {"x-big": "a" * (17 * 1024)}, 431,
     {"error": "headers_too_large", "detail": "the request headers are larger than 16 KiB"}),
    ("/auth/revoke", {"x-big": "a" * (17 * 1024)}, 431,
     {"error": "invalid_request",
      "error_description": "the request headers are larger than 16 KiB"}),
])
async def test_hardening_refusals_answer_through_the_boundary(
        path: str, headers: dict[str, str], status: int, body: dict[str, Any]) -> None:
    async def never(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("the app must not be called")

    hardening = Hardening(never, hsts=False)
    app = ErrorBoundary(hardening, headers=hardening.extra)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "query_string": b"",
             "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
    await app(scope, receive, send)
    assert sent[0]["status"] == status
    got = dict(sent[0]["headers"])
    assert got[b"cache-control"] == b"no-store" and got[b"x-content-type-options"] == b"nosniff"
    assert orjson.loads(sent[1]["body"]) == body


async def test_a_body_over_the_limit_while_reading_is_413() -> None:
    async def reader(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass
        await ok(scope, receive, send)

    async def chunks() -> Any:  # no Content-Length: stopped while reading
        for _ in range(9):
            yield b"x" * 8192

    async with served(reader) as c:
        r = await c.post("/auth/register", content=chunks())
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"


async def test_other_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    await ErrorBoundary(app)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]


async def test_hardening_adds_its_headers_unless_the_app_set_them() -> None:
    async def page(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"referrer-policy", b"same-origin")]})
        await send({"type": "http.response.body", "body": b""})

    async with served(page) as c:
        r = await c.get("/login")
    assert r.headers.get_list("referrer-policy") == ["same-origin"]
    assert r.headers.get_list("x-content-type-options") == ["nosniff"]
    async with served(ok) as c:
        r = await c.get("/x")
    assert r.headers.get_list("referrer-policy") == ["no-referrer"]


@pytest.mark.parametrize("case", ["crash", "body too large", "headers too large"])
async def test_what_the_boundary_answers_carries_the_request_id(
        case: str, caplog: pytest.LogCaptureFixture) -> None:
    """A 500, 413 or 431 written by the boundary has the request's X-Request-ID, and the log
    line about it names the same id (an operator finds the request from the answer)."""
    headers = {"content-length": str(MAX_BODY + 1)} if case == "body too large" else \
        {"x-big": "a" * 17000} if case == "headers too large" else {}
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO, logger="authgate"):
        async with served(crashing()) as c:
            r = await c.get("/auth/me", headers=headers)
    assert r.status_code == {"crash": 500, "body too large": 413, "headers too large": 431}[case]
    rid = r.headers.get("x-request-id")
    assert rid and len(rid) == 16
    if case == "crash":
        assert [rec for rec in caplog.records if getattr(rec, "request_id", None) == rid]
