"""The server's error boundary: the outermost ASGI layer, which the hardening layer, the fast
path and the app sit inside. An exception that reaches it becomes the contract's JSON error
(:func:`authgate.web.errors.to_response`) when no response has started, and one log line
when one has: never a traceback, never an HTML 500."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authgate.logs import request_id
from authgate.web.authn import bearer_token
from authgate.web.errors import OAUTH_PATHS, to_response

log = logging.getLogger("authgate")
REQUEST_ID_KEY = "authgate.request_id"  # the scope key the hardening layer sets


class ErrorBoundary:
    """``headers`` go on every response the boundary writes itself (the security headers
    the hardening layer adds to the others)."""

    def __init__(self, app: ASGIApp, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        self.app = app
        self.headers = list(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def tracked_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracked_send)
        except Exception as exc:
            if status == 500:  # answered by to_response already (and logged there):
                return  # FastAPI's last handler renders the error, then re-raises it
            if status:
                log.error("unhandled error on %s %s after its response started: %s",
                          scope["method"], scope["path"], type(exc).__name__)
                return
            rid = scope.get(REQUEST_ID_KEY)
            token = request_id.set(rid) if rid else None
            try:
                response = to_response(exc, oauth=scope["path"] in OAUTH_PATHS,
                                       token_sent=bearer_token(HTTPConnection(scope))
                                       is not None,
                                       where=f"{scope['method']} {scope['path']}")
            finally:
                if token is not None:
                    request_id.reset(token)
            present = {name for name, _ in response.raw_headers}
            response.raw_headers += [(n, v) for n, v in self.headers if n not in present]
            if rid:
                response.raw_headers.append((b"x-request-id", rid.encode()))
            await response(scope, receive, send)
