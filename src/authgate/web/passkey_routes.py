"""The passkey API (WebAuthn): register (signed in, recent sign-in), list, rename, delete;
sign in without a password; the second factor's request options. Added to ``gate.router``.

Options are answered as ``{"publicKey": <the options as JSON>}``: what
``PublicKeyCredential.parseCreationOptionsFromJSON`` / ``parseRequestOptionsFromJSON`` take
(base64url for the binary fields); credentials are sent back as
``PublicKeyCredential.toJSON()`` gives them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from authgate.engine import Engine
from authgate.errors import InvalidRequest
from authgate.store.passkeys import Passkey
from authgate.web.authn import authenticate
from authgate.web.http import NO_STORE, JSONResponse, check_origin, client_ip, get_cookie
from authgate.web.parsing import check_fields, read_params

_STR = {"type": "string"}
_OBJ = {"type": "object"}


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def passkey_json(key: Passkey) -> dict[str, Any]:
    return {"id": key.id, "name": key.name, "created_at": _iso(key.created_at),
            "last_used_at": _iso(key.last_used_at), "backup_eligible": key.backup_eligible,
            "backed_up": key.backed_up, "transports": list(key.transports),
            "aaguid": key.aaguid}


def _body(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema = {"type": "object", "properties": props, "required": required,
              "additionalProperties": False}
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}}}


async def _params(request: Request, allowed: set[str], required: set[str]) -> dict[str, Any]:
    """The JSON body; an empty body is ``{}`` where nothing is required (the options
    endpoints take no body: none, or ``{}``)."""
    if not required and not await request.body():
        return {}
    data = await read_params(request)
    check_fields(data, allowed, required)
    return data


def add_passkey_routes(router: APIRouter, engine: Engine) -> None:
    s = engine.settings
    passkeys = engine.passkeys
    from authgate.web.router import signed_in_json

    @router.post("/auth/passkeys/register/options",
                 summary="Options to create a passkey (signed in within 10 minutes)")
    async def register_options(request: Request) -> Response:
        principal = await authenticate(engine, request)
        await _params(request, set(), set())
        options = await passkeys.registration_options(principal)
        return JSONResponse({"publicKey": options}, headers=NO_STORE)

    @router.post("/auth/passkeys/register", status_code=201,
                 openapi_extra=_body({"credential": _OBJ, "name": _STR}, ["credential"]),
                 summary="Keep the passkey the authenticator created")
    async def register(request: Request) -> Response:
        principal = await authenticate(engine, request)
        data = await _params(request, {"credential", "name"}, {"credential"})
        key = await passkeys.register(principal, data["credential"], data.get("name"),
                                      client_ip(request, s))
        return JSONResponse(passkey_json(key), status_code=201, headers=NO_STORE)

    @router.get("/auth/passkeys", summary="The caller's passkeys")
    async def list_passkeys(request: Request) -> Response:
        principal = await authenticate(engine, request)
        keys = await passkeys.user_passkeys(principal.user.id)
        return JSONResponse({"passkeys": [passkey_json(k) for k in keys]}, headers=NO_STORE)

    @router.patch("/auth/passkeys/{passkey_id}", status_code=204,
                  openapi_extra=_body({"name": _STR}, ["name"]),
                  summary="Rename one of the caller's passkeys")
    async def rename(request: Request, passkey_id: str) -> Response:
        principal = await authenticate(engine, request)
        data = await _params(request, {"name"}, {"name"})
        await passkeys.rename(principal, passkey_id, data["name"])
        return Response(status_code=204, headers=NO_STORE)

    @router.delete("/auth/passkeys/{passkey_id}", status_code=204,
                   summary="Delete one of the caller's passkeys (signed in within 10 minutes)")
    async def delete(request: Request, passkey_id: str) -> Response:
        principal = await authenticate(engine, request)
        await passkeys.delete(principal, passkey_id, client_ip(request, s))
        return Response(status_code=204, headers=NO_STORE)

    @router.get("/auth/passkeys/login/options",
                summary="Options to sign in with a passkey (also for autofill); no state")
    async def login_options(request: Request) -> Response:
        return JSONResponse({"publicKey": await passkeys.login_options()}, headers=NO_STORE)

    @router.post("/auth/passkeys/login",
                 openapi_extra=_body({"credential": _OBJ, "remember": {"type": "boolean"}},
                                     ["credential"]),
                 summary="Sign in with a passkey (a session, as POST /auth/login)")
    async def login(request: Request) -> Response:
        check_origin(request, s)  # login CSRF, as /auth/login
        data = await _params(request, {"credential", "remember"}, {"credential"})
        remember = data.get("remember", False)
        if not isinstance(remember, bool):
            raise InvalidRequest("remember must be true or false")
        value, rec, user = await engine.sessions.login_passkey(
            data["credential"], remember=remember, ip=client_ip(request, s),
            user_agent=request.headers.get("user-agent", ""),
            replacing=get_cookie(request, s.session_cookie))
        return signed_in_json(engine, value, rec, user)

    @router.post("/auth/passkeys/mfa/options",
                 openapi_extra=_body({"mfa_token": _STR}, ["mfa_token"]),
                 summary="Options to use a passkey as the second factor of a pending sign-in")
    async def mfa_options(request: Request) -> Response:
        check_origin(request, s)
        data = await _params(request, {"mfa_token"}, {"mfa_token"})
        options = await passkeys.mfa_options(data["mfa_token"])
        return JSONResponse({"publicKey": options}, headers=NO_STORE)


__all__ = ["add_passkey_routes", "passkey_json"]
