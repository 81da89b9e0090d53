"""The server's fast path: ``GET /auth/me``, ``GET /auth/verify``, the JWKS and ``/healthz``
are answered here, before FastAPI's router (whose route matching is most of a request's
cost), by the very handlers the app's routes use. Everything else passes through."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from authgate.errors import AuthGateError
from authgate.web.authn import bearer_token
from authgate.web.http import NO_STORE, JSONResponse, error_response
from authgate.web.router import Handler

log = logging.getLogger("authgate")


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
                    response = error_response(exc, token_sent=bearer_token(request) is not None)
                except Exception as exc:  # outside FastAPI: answer like its handler would
                    log.error("unhandled error on GET %s: %s", scope["path"],
                              type(exc).__name__)
                    response = JSONResponse({"error": "internal", "detail": "internal error"},
                                            status_code=500, headers=NO_STORE)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
