"""A plain Starlette app with authgate's middleware (no FastAPI in your code).

Run it (from the repository root):

    .venv/bin/uvicorn examples.starlette_app:app --port 8003

``/whoami`` is an API (401 for anonymous callers), ``/`` a page (anonymous callers go to
``/login`` and come back). Create a user with
``AUTHGATE_DATABASE_URL=sqlite:///starlette_app.db .venv/bin/authgate users create alice``.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from authgate import AuthGate, AuthGateMiddleware, Settings

gate = AuthGate(Settings(
    database_url=os.environ.get("AUTHGATE_DATABASE_URL", "sqlite:///starlette_app.db"),
    public_url=os.environ.get("AUTHGATE_PUBLIC_URL", "http://127.0.0.1:8003"),
))


@requires("authenticated", status_code=401)  # API: 401 for anonymous callers
async def whoami(request: Request) -> Response:
    return JSONResponse({"user": request.user.display_name, "scopes": request.auth.scopes})


@requires("authenticated", redirect="login")  # page: anonymous callers go to /login
async def home(request: Request) -> Response:
    return JSONResponse({"hello": request.user.display_name})


app = Starlette(
    routes=[Route("/whoami", whoami), Route("/", home), *gate.pages,
            Mount("", app=gate.asgi_app)],  # the /auth/* API and the JWKS
    middleware=[Middleware(AuthGateMiddleware, gate=gate)],
    lifespan=gate.lifespan,
)
