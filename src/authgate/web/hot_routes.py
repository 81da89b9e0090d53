"""The hot read-only routes: ``GET /auth/me``, ``GET /auth/verify`` (forward-auth, with
RFC 9470 step-up) and the JWKS. One set of handlers serves both the router
(:func:`authgate.web.router.build_router` registers them) and the server's fast path
(:mod:`authgate.web.fastpath`), which answers them before FastAPI's route matching;
:data:`Handler` is the type of its table's entries."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from authgate.engine import Engine
from authgate.errors import InsufficientUserAuthentication, InvalidRequest, NotAuthenticated
from authgate.models import Principal
from authgate.web.authn import authenticate
from authgate.web.http import NO_STORE, SAFE_METHODS, PrivateJSON, check_csrf
from authgate.web.sso import unauthenticated

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def hot_handlers(engine: Engine) -> dict[str, Handler]:
    """The read-only routes every protected request or proxy hits. They raise
    :class:`AuthGateError`; the router (and the server's fast path) turn that into the
    contract's error."""

    async def me(request: Request) -> Response:
        return PrivateJSON(me_json(await authenticate(engine, request)))

    sso = engine.settings.cookies.domain is not None

    async def verify(request: Request) -> Response:
        try:
            principal = await authenticate(engine, request, csrf=False)
        except NotAuthenticated as exc:
            # COOKIE_DOMAIN: a browser's page navigation goes to the login page (web/sso.py)
            sent = unauthenticated(request, engine.settings, exc) if sso else None
            if sent is None:
                raise
            return sent
        # The proxied request's method (nginx: X-Original-Method; Traefik and Caddy:
        # X-Forwarded-Method): an unsafe one authenticated by a cookie gets the CSRF check
        # the subrequest itself (a GET) would skip. Each proxy sets its own header but
        # passes the client's copy of the other one through, so a client could name a
        # safe method in either: the request is unsafe when either header says so.
        methods = {request.headers.get(h, "").strip().upper()
                   for h in ("x-original-method", "x-forwarded-method")} - {""}
        if principal.via_cookie and not methods <= SAFE_METHODS:
            check_csrf(request, engine.settings, principal.csrf_token)
        wanted = request.query_params.get("scope")
        if wanted:
            engine.require_scopes(principal, wanted.split())
        try:
            step_up(engine, principal, request.query_params)
        except InsufficientUserAuthentication as exc:  # a page: sign in again and come back
            sent = unauthenticated(request, engine.settings, exc) if sso else None
            if sent is None:
                raise
            return sent
        return Response(status_code=200, headers={
            **NO_STORE,
            "X-Auth-User-Id": principal.user.id,
            "X-Auth-Username": _header_safe(principal.user.username),
            "X-Auth-Roles": ",".join(principal.user.roles),
            "X-Auth-Scopes": " ".join(principal.scopes),
            "X-Auth-Method": principal.auth,
            "X-Auth-Amr": " ".join(principal.amr),
        })

    async def jwks(request: Request) -> Response:
        return Response(engine.keys.jwks_body, media_type="application/json",
                        headers={"Cache-Control": "public, max-age=300"})

    return {"/auth/me": me, "/auth/verify": verify, "/.well-known/jwks.json": jwks}


def me_json(principal: Principal) -> dict[str, Any]:
    body: dict[str, Any] = {"id": principal.user.id, "username": principal.user.username,
                            "roles": list(principal.user.roles), "email": principal.user.email,
                            "email_verified": principal.user.email_verified,
                            "scopes": list(principal.scopes), "auth": principal.auth}
    body["amr"] = list(principal.amr)
    if principal.auth_time is not None:
        body["auth_time"] = int(principal.auth_time)
    if principal.csrf_token is not None:
        body["csrf_token"] = principal.csrf_token
    return body


def step_up(engine: Engine, principal: Principal, query: Any) -> None:
    """``?mfa=1`` and ``?max_age=N`` of ``/auth/verify``: RFC 9470 step-up."""
    mfa = query.get("mfa", "") in ("1", "true")
    raw = query.get("max_age")
    max_age: int | None = None
    if raw is not None:
        if not raw.isdigit() or len(raw) > 9:
            raise InvalidRequest("max_age must be a number of seconds")
        max_age = int(raw)
    if mfa or max_age is not None:
        engine.require_auth(principal, mfa=mfa, max_age=max_age)


#: What ``X-Auth-Username`` carries as is: printable ASCII except ``%`` and ``+``.
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in "%+")


def _header_safe(value: str) -> str:
    """A username as a header value that percent-decodes (UTF-8) to exactly that username:
    printable ASCII stays as is; ``%``, ``+``, non-ASCII and anything non-printable become
    ``%XX`` of their UTF-8 bytes. ``%`` is encoded so that no name can pass for another
    after decoding (``%61dmin`` is sent as ``%2561dmin``, never read as ``admin``), and
    ``+`` so that form-style decoding (``+`` as a space) gives the same name."""
    if value.isascii() and value.isprintable() and "%" not in value and "+" not in value:
        return value
    from urllib.parse import quote

    return quote(value, safe=_HEADER_SAFE)



__all__ = ["Handler", "hot_handlers", "me_json"]
