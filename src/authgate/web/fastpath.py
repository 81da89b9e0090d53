"""The server's fast path: ``GET /auth/me``, ``GET /auth/verify``, the JWKS and ``/healthz``
are answered here, before FastAPI's router (whose route matching is most of a request's
cost), by the very handlers the app's routes use. Everything else passes through; an
unexpected exception goes on to the server's error boundary."""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from authgate.errors import AuthGateError
from authgate.web.authn import bearer_token
from authgate.web.errors import to_response
from authgate.web.hot_routes import Handler


class FastPath:
    def __init__(self, app: ASGIApp, handlers: dict[str, Handler]) -> None:
        self.app = app
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            handler = self.handlers.get(scope["path"])
            if handler is not None:
                request = Request(scope, receive)
                try:
                    response = await handler(request)
                except AuthGateError as exc:
                    response = to_response(exc, token_sent=bearer_token(request) is not None)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
