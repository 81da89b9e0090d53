"""The server behind ``authgate serve``: built from the same public API a user embeds
(``AuthGate``: its router and lifespan), plus pages, health, metrics and hardening."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authgate.clock import Clock
from authgate.engine import Engine
from authgate.errors import AuthGateError, BadRequest, NotAuthenticated, NotFound, PayloadTooLarge
from authgate.gate import AuthGate
from authgate.logs import fresh_request_id, new_request_id, request_id
from authgate.metrics import CONTENT_TYPE, Metrics
from authgate.settings import Settings
from authgate.web.admin_routes import admin_route_label
from authgate.web.boundary import REQUEST_ID_KEY, ErrorBoundary
from authgate.web.errors import OAUTH_PATHS, HeadersTooLarge, InvalidBody, to_response
from authgate.web.fastpath import FastPath
from authgate.web.hot_routes import Handler, hot_handlers
from authgate.web.http import NO_STORE, JSONResponse, _trusted
from authgate.web.parsing import MAX_BODY

access = logging.getLogger("authgate.access")


MAX_HEADERS = 16 * 1024


class Hardening:
    """Pure ASGI: refuses bodies over 64 KiB (413 before the app reads them) and request
    headers over 16 KiB in all (431), raising the error for the boundary outside it; adds
    the security headers every response should carry, gives each request an id
    (``X-Request-ID``: a trusted proxy's, else a new one; echoed in the response and on
    every log line of the request) and writes the access log (``ACCESS_LOG``; the path
    without its query string, which may hold a token)."""

    def __init__(self, app: ASGIApp, hsts: bool, settings: Settings | None = None,
                 metrics: Metrics | None = None) -> None:
        self.app = app
        self.extra: list[tuple[bytes, bytes]] = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
        ]
        if hsts:
            self.extra.append((b"strict-transport-security",
                               b"max-age=31536000; includeSubDomains"))
        self.extra_names = frozenset(name for name, _ in self.extra)
        self.proxies = tuple(settings.trusted_proxies) if settings is not None else ()
        self.access_log = settings.access_log if settings is not None else False
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = None
        header_bytes = 0
        refused: AuthGateError | None = None
        for name, value in scope["headers"]:
            header_bytes += len(name) + len(value)
            if name == b"x-request-id" and self.proxies:
                peer = scope["client"][0] if scope.get("client") else ""
                if _trusted(peer, self.proxies):
                    offered = value.decode("latin-1")
            if name == b"content-length" and refused is None:
                if not value.isdigit():
                    refused = BadRequest("invalid Content-Length")
                elif int(value) > MAX_BODY:
                    refused = PayloadTooLarge()
        if header_bytes > MAX_HEADERS:
            refused = HeadersTooLarge()
        rid = new_request_id(offered) if offered else fresh_request_id()
        # what the boundary outside answers carries the id too (a refusal here, a crash)
        scope[REQUEST_ID_KEY] = rid
        if refused is not None:
            raise refused
        token = request_id.set(rid)
        received = 0
        status = 0
        started_at = time.perf_counter()

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY:
                    raise PayloadTooLarge()  # the app (else the boundary) answers 413
            return message

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = list(message.get("headers", ()))
                for name, _ in headers:  # a loop, not a set: nothing allocated per response
                    if name in self.extra_names:  # the app set one itself (the pages);
                        # (Starlette writes header names lower-case, as these are)
                        present = {n.lower() for n, _ in headers}
                        headers += [(n, v) for n, v in self.extra if n not in present]
                        break
                else:
                    headers += self.extra
                headers.append((b"x-request-id", rid.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except Exception as exc:  # the boundary outside answers it
            if not started:
                status = exc.status if isinstance(exc, AuthGateError) else 500
            raise
        finally:
            elapsed = time.perf_counter() - started_at
            if self.metrics is not None:
                self.metrics.latency.observe(elapsed, route_label(scope["path"]))
            if self.access_log:
                access.info("%s %s %s", scope["method"], scope["path"], status, extra={
                    "method": scope["method"], "path": scope["path"], "status": status,
                    "ms": round(elapsed * 1000, 2),
                    "client": scope["client"][0] if scope.get("client") else ""})
            request_id.reset(token)


_ROUTES = frozenset({
    "/auth/register", "/auth/login", "/auth/logout", "/auth/me", "/auth/sessions",
    "/auth/password", "/auth/token", "/auth/revoke", "/auth/verify", "/.well-known/jwks.json",
    "/auth/mfa/totp", "/auth/mfa/totp/confirm", "/auth/login/mfa", "/login/mfa",
    "/login", "/account", "/healthz", "/readyz", "/livez", "/metrics", "/openapi.json", "/docs",
    "/static/authgate.css", "/auth/email", "/auth/email/verification", "/auth/email/verify",
    "/auth/password/forgot", "/auth/password/reset", "/auth/account", "/register",
    "/forgot-password", "/reset-password", "/verify-email"})


def route_label(path: str) -> str:
    """The route a path belongs to, for metrics (never the raw path: ids would make every
    request a series of its own)."""
    if path in _ROUTES:
        return path
    if path.startswith("/auth/sessions/"):
        return "/auth/sessions/{id}"
    if path.startswith("/account/"):
        return "/account/{action}"
    if path.startswith("/admin/"):
        return admin_route_label(path)
    return "other"


def create_app(settings: Settings | None = None, gate: AuthGate | None = None) -> FastAPI:
    """The FastAPI app of the server: the API, pages, health, metrics, docs. The server
    runs it behind :func:`create_server_app`."""
    gate = gate or AuthGate(settings)
    engine = gate.engine
    app = FastAPI(title="authgate", version=_version(), lifespan=_lifespan(gate),
                  docs_url="/docs", openapi_url="/openapi.json", redoc_url=None,
                  description="Hybrid session + token authentication.")
    app.include_router(gate.router)
    app.include_router(gate.admin_router)
    app.router.routes.extend(gate.pages)

    install_openapi_security(app, engine.settings)
    app.add_api_route("/healthz", health_handler(engine), methods=["GET"], tags=["ops"],
                      summary="Readiness (an alias of /readyz)")
    app.add_api_route("/readyz", health_handler(engine), methods=["GET"], tags=["ops"],
                      summary="Readiness: database, Redis and the revocation channel fresh")
    app.add_api_route("/livez", live_handler, methods=["GET"], tags=["ops"],
                      summary="Liveness: the process answers")
    metrics_token = (settings_token.get_secret_value().encode()
                     if (settings_token := engine.settings.metrics_token) else None)

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
    async def metrics(request: Request) -> Response:
        if engine.settings.metrics_address:  # served on its own listener instead
            return to_response(NotFound("Not Found"))
        if metrics_token is not None:
            sent = request.headers.get("authorization", "").encode("latin-1")
            if not hmac.compare_digest(sent, b"Bearer " + metrics_token):
                return to_response(NotAuthenticated("Send the metrics token as a bearer "
                                                    "token."))
        return Response(await engine.metrics_text(), media_type=CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        from starlette.responses import RedirectResponse

        return RedirectResponse("/account", status_code=303)

    @app.exception_handler(AuthGateError)
    async def on_auth_error(request: Request, exc: AuthGateError) -> Response:
        return to_response(exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> Response:
        return to_response(InvalidBody("the request is invalid"))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        # e.g. GET /auth/token (405): RFC 6749 §5.2's form
        return to_response(exc, oauth=request.url.path in OAUTH_PATHS)

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception) -> Response:
        # (Starlette re-raises it after this response: the boundary knows it was answered)
        return to_response(exc, where=f"{request.method} {request.url.path}")

    return app


# The routes that take a credential, and which: Swagger UI's *Authorize* then sends it.
_EITHER: list[dict[str, list[str]]] = [{"bearer": []}, {"session": []}]
PROTECTED = {("/auth/me", "get"): _EITHER, ("/auth/verify", "get"): _EITHER,
             ("/auth/logout", "post"): _EITHER, ("/auth/sessions", "get"): _EITHER,
             ("/auth/sessions", "delete"): _EITHER,
             ("/auth/sessions/{entry_id}", "delete"): _EITHER,
             ("/auth/password", "post"): _EITHER, ("/auth/mfa/totp", "post"): _EITHER,
             ("/auth/mfa/totp", "delete"): _EITHER,
             ("/auth/mfa/totp/confirm", "post"): _EITHER}


def install_openapi_security(app: FastAPI, settings: Settings) -> None:
    """Declare both ways in on the server's OpenAPI document (the API's own routes read
    credentials themselves, so FastAPI does not see them): the session cookie and the
    OAuth 2.0 password flow against ``POST /auth/token``."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "oauth2", "flows": {"password": {
                "tokenUrl": "/auth/token", "scopes": {}}}},
            "session": {"type": "apiKey", "in": "cookie", "name": settings.session_cookie},
        }
        for (path, method), security in PROTECTED.items():
            operation = schema.get("paths", {}).get(path, {}).get(method)
            if operation is not None:
                operation["security"] = security
        for path, operations in schema.get("paths", {}).items():
            if path.startswith("/admin/"):  # every admin route takes either credential
                for operation in operations.values():
                    operation["security"] = _EITHER
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _lifespan(gate: AuthGate) -> Any:
    """The gate's lifespan, plus the metrics listener when ``METRICS_ADDRESS`` is set."""
    address = gate.settings.metrics_address
    if not address:
        return gate.lifespan

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        from authgate.web.metrics_listener import MetricsListener

        async with gate.lifespan(app):
            listener = MetricsListener(address, gate.engine.metrics_text)
            await listener.start()
            try:
                yield
            finally:
                await listener.stop()

    return lifespan


async def live_handler(request: Request) -> Response:
    """Liveness: the process answers (no backend is asked, so an outage of one does not
    make an orchestrator restart every instance)."""
    return JSONResponse({"status": "ok"}, headers=NO_STORE)


def health_handler(engine: Engine) -> Handler:
    async def healthz(request: Request) -> Response:
        checks = await engine.health()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", **checks},
                            status_code=200 if ok else 503, headers=NO_STORE)

    return healthz


def create_server_app(settings: Settings | None = None, *, clock: Clock | None = None,
                      gate: AuthGate | None = None) -> ASGIApp:
    """:func:`create_app` behind the fast path, the hardening layer and the error boundary,
    outside FastAPI's own middleware stack (which costs more than the authentication
    itself). ``gate``: one built by the caller (the in-process tests reach its engine)."""
    gate = gate or AuthGate(settings, clock=clock)
    app = create_app(gate=gate)
    health = health_handler(gate.engine)
    fast = {**hot_handlers(gate.engine), "/healthz": health, "/readyz": health,
            "/livez": live_handler}
    hardening = Hardening(FastPath(app, fast),
                          hsts=gate.settings.public_url.startswith("https://"),
                          settings=gate.settings, metrics=gate.engine.metrics)
    return ErrorBoundary(hardening, headers=hardening.extra)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("authgate")
    except PackageNotFoundError:
        return "0"


def app_factory(clock: Clock | None = None) -> Any:
    """uvicorn ``--factory`` entry: settings from the environment and ``AUTHGATE_CONFIG``."""
    import os

    from authgate.logs import configure
    from authgate.settings import load_settings

    settings = load_settings(os.environ.get("AUTHGATE_CONFIG") or None)
    configure(settings.log_format)  # in every worker: they are processes of their own
    return create_server_app(settings, clock=clock)
