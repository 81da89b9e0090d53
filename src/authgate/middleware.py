"""A pure-ASGI Starlette middleware: fills ``scope["user"]`` and ``scope["auth"]`` so
``request.user``, ``request.auth.scopes`` and ``starlette.authentication.requires`` work as
with Starlette's own backends."""

from __future__ import annotations

from starlette.authentication import AuthCredentials, BaseUser, UnauthenticatedUser
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from authgate.errors import AuthGateError, BackendUnavailable, Throttled
from authgate.gate import AuthGate
from authgate.models import Principal
from authgate.web.authn import authenticate
from authgate.web.errors import to_response


class AuthenticatedUser(BaseUser):
    """``request.user`` for a signed-in caller; ``.principal`` has everything."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.principal.user.username

    @property
    def identity(self) -> str:
        return self.principal.user.id

    def __getattr__(self, name: str) -> object:
        return getattr(self.principal, name)


class AuthGateMiddleware:
    """``app.add_middleware(AuthGateMiddleware, gate=gate)``. Unauthenticated or refused
    credentials leave an anonymous user (routes decide with ``@requires``); a CSRF failure
    on a cookie-authenticated unsafe request answers 403, as does a cookie-authenticated
    websocket handshake from a foreign ``Origin``, and a backend outage 503."""

    def __init__(self, app: ASGIApp, gate: AuthGate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        for key, _ in scope["headers"]:
            if key == b"authorization" or key == b"cookie":
                break
        else:  # no credential can be there: anonymous, without raising NotAuthenticated
            scope["user"], scope["auth"] = UnauthenticatedUser(), AuthCredentials()
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        try:
            principal = await authenticate(self.gate.engine, conn)
        except (BackendUnavailable, Throttled) as exc:  # an outage; a guessing block
            await _refuse(exc, scope, receive, send)
            return
        except AuthGateError as exc:
            if exc.status == 403:  # CSRF; for a websocket, a foreign Origin
                await _refuse(exc, scope, receive, send)
                return
            scope["user"], scope["auth"] = UnauthenticatedUser(), AuthCredentials()
        else:
            scope["user"] = AuthenticatedUser(principal)
            scope["auth"] = AuthCredentials(["authenticated", *principal.scopes])
        await self.app(scope, receive, send)


async def _refuse(exc: AuthGateError, scope: Scope, receive: Receive, send: Send) -> None:
    """The contract's error; a websocket handshake is refused before the app sees it, with
    that HTTP response where the server supports the ASGI denial extension, else by
    closing it before ``accept`` (the server answers 403)."""
    if (scope["type"] == "websocket"
            and "websocket.http.response" not in (scope.get("extensions") or {})):
        await send({"type": "websocket.close", "code": 1008})
        return
    await to_response(exc)(scope, receive, send)
