"""Which credential a request carries, and what it proves.

*Where a credential travels* (header, token cookie, session cookie) is decided here; *what
it is* (session record, access token, API key: an ``ag_`` bearer) is the engine's business.
Precedence is the contract's: ``Authorization: Bearer``, then the access-token cookie, then
the session cookie. A bearer header that fails is a failure (no fallback to a cookie).
Unsafe methods authenticated by a cookie are CSRF-checked here, and cookie-authenticated
WebSocket handshakes Origin-checked.
"""

from __future__ import annotations

from typing import Literal

from starlette.requests import HTTPConnection

from authgate.engine import Engine
from authgate.errors import InvalidToken, NotAuthenticated
from authgate.models import Principal
from authgate.web.http import UNSAFE_METHODS, check_csrf, check_origin, get_cookie, raw_header

Accept = Literal["any", "session", "token"]


def bearer_token(conn: HTTPConnection) -> str | None:
    header = raw_header(conn, b"authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip()


async def authenticate(engine: Engine, conn: HTTPConnection, accept: Accept = "any",
                       *, csrf: bool = True) -> Principal:
    """The caller, or :class:`NotAuthenticated` / :class:`InvalidToken`; CSRF-checked when
    a cookie authenticates an unsafe method."""
    principal: Principal | None = None
    refused: str | None = None  # why a credential that was sent did not count (for the log)
    if accept in ("any", "token"):
        token = bearer_token(conn)
        if token is not None:
            if token.startswith("ag_"):  # an API key (personal access token)
                return await engine.api_keys.principal(token)
            return await engine.grants.token_principal(token)
        at_cookie = get_cookie(conn, engine.cookie_names[1])
        if at_cookie:
            try:
                principal = await engine.grants.token_principal(at_cookie, via_cookie=True)
            except InvalidToken as exc:
                if accept == "token":
                    raise
                refused = f"access-token cookie: {exc.reason}"
    if principal is None and accept in ("any", "session"):
        value = get_cookie(conn, engine.cookie_names[0])
        if value:
            principal = await engine.sessions.session_principal(value)
            if principal is None:
                refused = "unknown, expired or revoked session"
    if principal is None:
        raise NotAuthenticated(reason=refused)
    if csrf and principal.via_cookie and conn.scope.get("method") in UNSAFE_METHODS:
        check_csrf(conn, engine.settings, principal.csrf_token)  # type: ignore[arg-type]
    if principal.via_cookie and conn.scope["type"] == "websocket":
        # Cross-site WebSocket hijacking: browsers send cookies (and Origin) on any site's
        # handshake, and no CORS rule protects the socket. A bearer handshake is exempt.
        check_origin(conn, engine.settings)
    return principal
