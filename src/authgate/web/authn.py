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

from authgate.core.guessing import Uncached
from authgate.engine import Engine
from authgate.errors import InvalidToken, NotAuthenticated, Throttled
from authgate.models import Principal
from authgate.web.http import (
    UNSAFE_METHODS,
    check_csrf,
    check_origin,
    client_ip,
    cookie_value,
    credential_headers,
    raw_header,
)

Accept = Literal["any", "session", "token"]


def bearer_token(conn: HTTPConnection) -> str | None:
    return _bearer(raw_header(conn, b"authorization"))


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip()


async def authenticate(engine: Engine, conn: HTTPConnection, accept: Accept = "any",
                       *, csrf: bool = True) -> Principal:
    """The caller, or :class:`NotAuthenticated` / :class:`InvalidToken`; CSRF-checked when
    a cookie authenticates an unsafe method. A refused credential counts against the
    client's address (:mod:`authgate.core.guessing`); from a blocked address, a credential
    this process does not hold is :class:`Throttled` without a backend read."""
    guard = engine.guessing
    address: str | None = None
    wait = 0
    if guard.blocks:  # some address is blocked: is this one? (else: a dict's truth value)
        address = client_ip(conn, engine.settings)
        wait = guard.blocked(address)
    principal: Principal | None = None
    refused: str | None = None  # why a credential that was sent did not count (for the log)
    try:
        authorization, cookie = credential_headers(conn)
        token = _bearer(authorization) if accept != "session" else None
        if token is not None:
            principal = await (engine.api_keys.principal(token, load=not wait)
                               if token.startswith("ag_")  # an API key
                               else engine.grants.token_principal(token))
        elif accept != "session" and (at_cookie := cookie_value(cookie, engine.cookie_names[1])):
            try:
                principal = await engine.grants.token_principal(at_cookie, via_cookie=True)
            except InvalidToken as bad:
                if accept == "token":
                    raise
                refused = f"access-token cookie: {bad.reason}"
        if principal is None and accept != "token":
            value = cookie_value(cookie, engine.cookie_names[0])
            if value:
                principal = await engine.sessions.session_principal(value, load=not wait)
                if principal is None:
                    refused = "unknown, expired or revoked session"
        if principal is None:
            raise NotAuthenticated(reason=refused)
    except Uncached:
        guard.refused(address or "")  # counted in the block's closing line
        engine.metrics.count("throttled", "credential")
        raise _blocked(wait) from None
    except (InvalidToken, NotAuthenticated) as exc:
        if exc.reason is not None:  # a credential was sent, and refused
            exc.quiet = guard.refused(address or client_ip(conn, engine.settings))
        raise
    if csrf and principal.via_cookie and conn.scope.get("method") in UNSAFE_METHODS:
        check_csrf(conn, engine.settings, principal.csrf_token)  # type: ignore[arg-type]
    if principal.via_cookie and conn.scope["type"] == "websocket":
        # Cross-site WebSocket hijacking: browsers send cookies (and Origin) on any site's
        # handshake, and no CORS rule protects the socket. A bearer handshake is exempt.
        check_origin(conn, engine.settings)
    return principal


def _blocked(wait: int) -> Throttled:
    """The 429 of a blocked address, made here: bound to a local of the frame it is raised
    from, the exception and that frame (in its traceback) would make a reference cycle per
    request, and a flood of them long garbage-collector pauses (p99 ~80 ms against ~9)."""
    exc = Throttled(wait, reason="credential guessing from this address")
    exc.quiet = True  # the block's event and its closing line say it
    return exc
