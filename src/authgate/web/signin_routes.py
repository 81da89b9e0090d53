"""The caller's sign-in list: ``GET /auth/sessions`` (every session, token family and API
key), ``DELETE /auth/sessions/{id}`` (one), ``DELETE /auth/sessions`` (log out everywhere).
An API key may not use them. Added to :func:`build_router`'s router."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from authgate.engine import Engine
from authgate.models import Principal, SignInEntry
from authgate.web.authn import authenticate
from authgate.web.http import NO_STORE, JSONResponse, clear_session_cookie
from authgate.web.router import iso


def entry_json(e: SignInEntry) -> dict[str, Any]:
    """One entry of a sign-in list (``GET /auth/sessions``, the admin API's); an API key's
    adds its name, scopes and last use (``expires_at`` null: it never expires)."""
    body: dict[str, Any] = {
        "id": e.id, "kind": e.kind, "created_at": iso(e.created_at),
        "last_seen_at": iso(e.last_seen_at),
        "expires_at": iso(e.expires_at) if e.expires_at is not None else None,
        "ip": e.ip, "user_agent": e.user_agent, "current": e.current}
    if e.kind == "api_key":
        body.update(name=e.name, scopes=list(e.scopes or ()),
                    last_used_at=iso(e.last_used_at) if e.last_used_at else None)
    return body


def add_signin_routes(router: APIRouter, engine: Engine,
                      clear_sent_cookies: Callable[[Request, Response], None]) -> None:
    s = engine.settings

    async def interactive(request: Request) -> Principal:
        """The caller, signed in by a session or an access token: an API key (a machine's)
        may not read the sign-in list (IPs, user agents) nor end the user's sign-ins."""
        principal = await authenticate(engine, request)
        engine.api_keys.require_interactive(principal)
        return principal

    @router.get("/auth/sessions",
                summary="Every session, token family and API key of the caller")
    async def sessions(request: Request) -> Response:
        principal = await interactive(request)
        entries = await engine.sessions.sign_ins(principal)
        return JSONResponse([entry_json(e) for e in entries], headers=NO_STORE)

    @router.delete("/auth/sessions/{entry_id}", status_code=204,
                   summary="Revoke one session, token family or API key")
    async def revoke_one(request: Request, entry_id: str) -> Response:
        principal = await interactive(request)
        await engine.sessions.revoke_sign_in(principal, entry_id)
        response = Response(status_code=204, headers=NO_STORE)
        if principal.session is not None and principal.session.id == entry_id:
            clear_session_cookie(response, s)
        return response

    @router.delete("/auth/sessions", status_code=204, summary="Log out everywhere")
    async def revoke_all(request: Request) -> Response:
        principal = await interactive(request)
        await engine.sessions.logout_everywhere(principal.user)
        response = Response(status_code=204, headers=NO_STORE)
        clear_sent_cookies(request, response)
        return response
