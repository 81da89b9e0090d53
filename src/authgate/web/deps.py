"""FastAPI dependencies, with security schemes declared so OpenAPI (and Swagger UI's
*Authorize* button, against ``POST /auth/token``) knows both ways in."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Depends, HTTPException
from fastapi.security import APIKeyCookie, OAuth2PasswordBearer
from starlette.requests import Request

from authgate.errors import AuthGateError, InsufficientScope
from authgate.models import Principal
from authgate.web.authn import Accept, authenticate
from authgate.web.http import error_response

if TYPE_CHECKING:
    from authgate.gate import AuthGate, Dependency


class AuthGateHTTPException(HTTPException):
    """What the dependencies raise: FastAPI's own handler renders it as ``{"detail"}``;
    with :meth:`AuthGate.install_error_handlers` the app answers the contract's
    ``{"error", "detail"}`` instead."""

    def __init__(self, error: AuthGateError, headers: dict[str, str]) -> None:
        super().__init__(status_code=error.status, detail=error.detail, headers=headers or None)
        self.error = error


def session_challenge(cookie_name: str) -> str:
    """The 401 challenge of a session-only route: sign in with the form and send the cookie
    (the Cookie scheme of draft-broyer-http-cookie-auth), never an invitation to send a
    bearer token the route would refuse."""
    return f'Cookie realm="authgate", form-action="/login", cookie-name="{cookie_name}"'


def _http_error(exc: AuthGateError, challenge: str | None = None) -> HTTPException:
    response = error_response(exc)
    headers = {k: v for k, v in response.headers.items()
               if k.lower() in ("www-authenticate", "retry-after")}
    if challenge is not None and exc.status == 401:
        headers = {"WWW-Authenticate": challenge}
    return AuthGateHTTPException(exc, headers)


def build_dependency(gate: AuthGate, via: str, scopes: list[str]) -> Dependency:
    if via not in ("any", "session", "token"):
        raise ValueError("via must be 'any', 'session' or 'token'")
    accept: Accept = via  # type: ignore[assignment]
    s = gate.settings
    bearer = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False,
                                  scheme_name="bearer", scopes={})
    cookie = APIKeyCookie(name=s.session_cookie, auto_error=False, scheme_name="session")
    engine = gate.engine
    challenge = session_challenge(s.session_cookie) if accept == "session" else None

    async def check(request: Request) -> Principal:
        try:
            principal = await authenticate(engine, request, accept)
            if scopes:
                missing = [x for x in scopes if x not in principal.scopes]
                if missing:
                    raise InsufficientScope(f"requires scope: {' '.join(missing)}")
        except AuthGateError as exc:
            raise _http_error(exc, challenge) from None
        return principal

    if accept == "session":
        async def session_dep(request: Request,
                              _c: str | None = Depends(cookie)) -> Principal:
            return await check(request)
        return session_dep
    if accept == "token":
        async def token_dep(request: Request,
                            _b: str | None = Depends(bearer)) -> Principal:
            return await check(request)
        return token_dep

    async def any_dep(request: Request, _b: str | None = Depends(bearer),
                      _c: str | None = Depends(cookie)) -> Principal:
        return await check(request)
    return any_dep


def build_dependencies(gate: AuthGate) -> dict[str, Dependency]:
    return {via: build_dependency(gate, via, []) for via in ("any", "session", "token")}
