"""FastAPI dependencies, with security schemes declared so OpenAPI (and Swagger UI's
*Authorize* button, against ``POST /auth/token``) knows both ways in."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

from fastapi import Depends, HTTPException
from fastapi.security import APIKeyCookie, OAuth2PasswordBearer
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from authgate.errors import AuthGateError, InsufficientUserAuthentication
from authgate.models import Principal
from authgate.web.authn import Accept, authenticate
from authgate.web.errors import to_response

if TYPE_CHECKING:
    from authgate.gate import AuthGate, Dependency


class AuthGateHTTPException(HTTPException):
    """What the dependencies raise: FastAPI's own handler renders it as ``{"detail"}`` (with
    the contract's ``WWW-Authenticate`` / ``Retry-After``); with
    :meth:`AuthGate.install_error_handlers` the app answers :attr:`response`, the
    contract's ``{"error", "detail"}``, instead."""

    def __init__(self, error: AuthGateError, response: Response) -> None:
        headers = {k: v for k, v in response.headers.items()
                   if k in ("www-authenticate", "retry-after")}
        super().__init__(status_code=error.status, detail=error.detail, headers=headers or None)
        self.error = error
        self.response = response


def session_challenge(cookie_name: str) -> str:
    """The 401 challenge of a session-only route: sign in with the form and send the cookie
    (the Cookie scheme of draft-broyer-http-cookie-auth), never an invitation to send a
    bearer token the route would refuse."""
    return f'Cookie realm="authgate", form-action="/login", cookie-name="{cookie_name}"'


class _SessionScheme(APIKeyCookie):
    """The ``session`` scheme (the cookie) *and* the dependency that checks it: FastAPI
    declares a dependency that is a security scheme in OpenAPI, so making the scheme itself
    the dependency costs one dependency resolution per request instead of a chain of two or
    three (the scheme objects' own ``__call__`` never runs: credentials are read from the
    raw ASGI headers by :func:`authenticate`)."""

    def __init__(self, name: str, check: Callable[[Request], Awaitable[Principal]]) -> None:
        super().__init__(name=name, auto_error=False, scheme_name="session")
        self._check = check

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        return await self._check(request)


class _BearerScheme(OAuth2PasswordBearer):
    """The ``bearer`` scheme (OAuth2 password flow against ``POST /auth/token``, for Swagger
    UI's *Authorize*) *and* the dependency that checks it (see :class:`_SessionScheme`)."""

    def __init__(self, check: Callable[[Request], Awaitable[Principal]]) -> None:
        super().__init__(tokenUrl="/auth/token", auto_error=False, scheme_name="bearer",
                         scopes={})
        self._check = check

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        return await self._check(request)


class _SessionDeclared(APIKeyCookie):
    """The ``session`` scheme as a declaration only (for ``any``: OpenAPI lists both
    schemes, and a dependency can be one scheme): resolving it reads nothing."""

    async def __call__(self) -> None:  # type: ignore[override]
        return None


class _AnyScheme(_BearerScheme):
    """``bearer`` or ``session``: the bearer scheme checking both, with the session scheme
    declared beside it."""

    def __init__(self, check: Callable[[Request], Awaitable[Principal]],
                 cookie_name: str) -> None:
        super().__init__(check)
        declared = _SessionDeclared(name=cookie_name, auto_error=False, scheme_name="session")

        def call(request: Request, _session: None = Depends(declared)) -> None: ...

        # What FastAPI reads to build the dependant: the session scheme as a sub-dependency.
        self.__signature__ = inspect.signature(call, eval_str=True)

    async def __call__(self, request: Request,  # type: ignore[override]
                       _session: None = None) -> Principal:
        return await self._check(request)


def step_up_response(request: Request, exc: InsufficientUserAuthentication) -> Response:
    """RFC 9470's 401 for an API client; a browser asking for a page (``Accept: text/html``)
    is sent to sign in again and come back: ``/login?next=<this page>&reauth=1`` (the
    pages' form; the new session carries the fresh ``amr`` / ``auth_time``)."""
    if "text/html" in request.headers.get("accept", "") and request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}&reauth=1",
                                status_code=303, headers={"Cache-Control": "no-store"})
    return to_response(exc)


def build_dependency(gate: AuthGate, via: str, scopes: list[str], *, mfa: bool = False,
                     max_age: int | None = None) -> Dependency:
    if via not in ("any", "session", "token"):
        raise ValueError("via must be 'any', 'session' or 'token'")
    if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int)
                                or max_age < 0):
        raise ValueError("max_age must be a number of seconds (int >= 0)")
    accept: Accept = via  # type: ignore[assignment]
    s = gate.settings
    engine = gate.engine
    challenge = session_challenge(s.session_cookie) if accept == "session" else None
    wanted = list(scopes)
    step_up = mfa or max_age is not None

    async def check(request: Request) -> Principal:
        try:
            principal = await authenticate(engine, request, accept)
            if wanted:
                engine.require_scopes(principal, wanted)
            if step_up:
                engine.require_auth(principal, mfa=mfa, max_age=max_age)
        except InsufficientUserAuthentication as exc:
            raise AuthGateHTTPException(exc, step_up_response(request, exc)) from None
        except AuthGateError as exc:
            raise AuthGateHTTPException(exc, to_response(exc, challenge=challenge)) from None
        return principal

    if accept == "session":
        return _SessionScheme(s.session_cookie, check)
    if accept == "token":
        return _BearerScheme(check)
    return _AnyScheme(check, s.session_cookie)


def build_dependencies(gate: AuthGate) -> dict[str, Dependency]:
    return {via: build_dependency(gate, via, []) for via in ("any", "session", "token")}
