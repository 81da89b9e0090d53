"""authgate embedded in a user's own app, for bench/run.py's "what auth costs" rows.

Two ASGI apps over one ``AuthGate`` (``AUTHGATE_DATABASE_URL``), every route answering the
same small JSON, so a protected route ÷ ``/open`` of the same app is the price of auth:

- ``fastapi_app`` — the README's "Embed it" app: ``/open`` (no auth), ``/session``
  (``Depends(gate.session_user)``), ``/bearer`` (``Depends(gate.token_user)``), ``/any``
  (``Depends(gate.any_user)``) and ``/scoped`` (``Depends(gate.user(scopes=[...]))``);
  ``/before/session``, ``/before/bearer``, ``/before/scoped``: the same with the dependency
  shape authgate had before (sub-dependency chain), for a before/after from one run.
- ``starlette_app`` / ``starlette_mw`` — the same Starlette routes (``/open``, and
  ``/session`` = ``/bearer`` = ``@requires("authenticated")`` reading ``request.user``)
  without and with ``AuthGateMiddleware``. Without the middleware the protected routes
  answer 403 (no ``scope["auth"]``): only ``/open`` is loaded there.
- null auth, the frameworks' own cost of the shapes: ``fastapi_app``'s ``/nullauth``
  (one ``Depends`` of ``gate.session_user``'s shape, an ``async def`` taking ``Request``,
  that returns a fixed principal) and ``starlette_nullauth`` (a pure-ASGI middleware setting a
  fixed ``request.user``, then the same ``@requires`` routes). A protected route ÷ ``/open``
  reads against null auth ÷ ``/open``: what the shape alone costs, before any authentication.

Both include the ``/auth/*`` API (login, token) so the bench can sign in.

    AUTHGATE_DATABASE_URL=sqlite:///bench.db uvicorn embedded_app:fastapi_app
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import APIKeyCookie, OAuth2PasswordBearer
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, requires
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from authgate import AuthGate, Principal, Settings, User
from authgate.errors import AuthGateError, InsufficientScope
from authgate.middleware import AuthenticatedUser, AuthGateMiddleware

SCOPE = "reports:read"
gate = AuthGate(Settings(database_url=os.environ.get("AUTHGATE_DATABASE_URL",
                                                     "sqlite:///bench-embedded.db")))

fastapi_app = FastAPI(lifespan=gate.lifespan)
fastapi_app.include_router(gate.router)


@fastapi_app.get("/open")
async def open_route() -> dict[str, str]:
    return {"hello": "alice"}


#: What the null-auth dependency and middleware hand over: nobody was authenticated.
FIXED = Principal(user=User(id="nobody", username="alice"), auth="session", scopes=())


async def nobody(request: Request) -> Principal:
    return FIXED


@fastapi_app.get("/nullauth")
async def nullauth_route(user: Principal = Depends(nobody)) -> dict[str, str]:
    return {"hello": user.username}


@fastapi_app.get("/session")
async def session_route(user: Principal = Depends(gate.session_user)) -> dict[str, str]:
    return {"hello": user.username}


@fastapi_app.get("/bearer")
async def bearer_route(user: Principal = Depends(gate.token_user)) -> dict[str, str]:
    return {"hello": user.username}


@fastapi_app.get("/any")
async def any_route(user: Principal = Depends(gate.any_user)) -> dict[str, str]:
    return {"hello": user.username}


reports_reader = gate.user(scopes=[SCOPE])


@fastapi_app.get("/scoped")
async def scoped_route(user: Principal = Depends(reports_reader)) -> dict[str, str]:
    return {"hello": user.username}


# -- before: the dependency shape authgate had until issue 15 (a closure taking Request
# behind the scheme objects as sub-dependencies), kept for a same-run comparison.
#
# Route order matters here: FastAPI matches routes one by one, ~1.5 µs per route tried
# before the one that answers (measured in-process). The routes above sit right after
# `/open` (first `/nullauth`, then in the order of bench/run.py's cells), so each pays for at
# most five routes more than `/open` and one to four more than `/nullauth` (a bias against
# authgate: 1.5-7.5 µs of a ~130 µs request); these come after them and pay ~6 µs more
# each (so the before/after gain reads ~6 µs larger than it is).


def _chain(via: str, scopes: tuple[str, ...] = ()) -> Any:
    s = gate.settings
    bearer = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False,
                                  scheme_name="bearer", scopes={})
    cookie = APIKeyCookie(name=s.session_cookie, auto_error=False, scheme_name="session")

    async def check(request: Request) -> Principal:
        try:
            principal = await gate.authenticate(request, via)
            missing = [x for x in scopes if x not in principal.scopes]
            if missing:
                raise InsufficientScope(f"requires scope: {' '.join(missing)}")
        except AuthGateError as exc:
            raise HTTPException(exc.status, exc.detail) from None
        return principal

    if via == "session":
        async def session_dep(request: Request, _c: str | None = Depends(cookie)) -> Principal:
            return await check(request)
        return session_dep

    async def token_dep(request: Request, _b: str | None = Depends(bearer)) -> Principal:
        return await check(request)
    return token_dep


chain_session, chain_bearer = _chain("session"), _chain("token")
chain_scoped = _chain("token", (SCOPE,))


@fastapi_app.get("/before/session")
async def before_session(user: Principal = Depends(chain_session)) -> dict[str, str]:
    return {"hello": user.username}


@fastapi_app.get("/before/bearer")
async def before_bearer(user: Principal = Depends(chain_bearer)) -> dict[str, str]:
    return {"hello": user.username}


@fastapi_app.get("/before/scoped")
async def before_scoped(user: Principal = Depends(chain_scoped)) -> dict[str, str]:
    return {"hello": user.username}


async def s_open(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "alice"})


@requires("authenticated")
async def s_protected(request: Request) -> JSONResponse:
    return JSONResponse({"hello": request.user.display_name})


def _starlette(middleware: list[Middleware]) -> Starlette:
    return Starlette(routes=[Route("/open", s_open), Route("/session", s_protected),
                             Route("/bearer", s_protected), Mount("", app=gate.asgi_app)],
                     middleware=middleware, lifespan=gate.lifespan)


class NullAuthMiddleware:
    """``AuthGateMiddleware``'s shape without authentication: every request is ``FIXED``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope["user"] = AuthenticatedUser(FIXED)
            scope["auth"] = AuthCredentials(["authenticated"])
        await self.app(scope, receive, send)


starlette_app = _starlette([])
starlette_mw = _starlette([Middleware(AuthGateMiddleware, gate=gate)])
starlette_nullauth = _starlette([Middleware(NullAuthMiddleware)])
