"""The second-factor API of contract §8: enrol, confirm and remove an authenticator app
(TOTP), and finish a login that answered ``mfa_required``. Added to ``gate.router``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from authgate.engine import Engine
from authgate.errors import BadRequest
from authgate.web.authn import authenticate
from authgate.web.http import (
    NO_STORE,
    JSONResponse,
    check_origin,
    client_ip,
    get_cookie,
)
from authgate.web.parsing import check_fields, read_params

_STR = {"type": "string"}


def _body(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema = {"type": "object", "properties": props, "required": required,
              "additionalProperties": False}
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}}}


def add_mfa_routes(router: APIRouter, engine: Engine) -> None:
    s = engine.settings
    from authgate.web.router import signed_in_json

    @router.post("/auth/mfa/totp", openapi_extra=_body({"current_password": _STR},
                                                       ["current_password"]),
                 summary="Start enrolling an authenticator app (TOTP)")
    async def enrol(request: Request) -> Response:
        principal = await authenticate(engine, request)
        data = await read_params(request)
        check_fields(data, {"current_password"}, {"current_password"})
        done = await engine.factors.enrol(principal.user, data["current_password"],
                                          client_ip(request, s))
        return JSONResponse({"secret": done.secret, "otpauth_uri": done.otpauth_uri},
                            headers=NO_STORE)

    @router.post("/auth/mfa/totp/confirm", openapi_extra=_body({"code": _STR}, ["code"]),
                 summary="Activate the authenticator app with a code; the recovery codes")
    async def confirm(request: Request) -> Response:
        principal = await authenticate(engine, request)
        data = await read_params(request)
        check_fields(data, {"code"}, {"code"})
        codes = await engine.factors.confirm(principal.user, data["code"],
                                             client_ip(request, s))
        return JSONResponse({"recovery_codes": codes}, headers=NO_STORE)

    @router.delete("/auth/mfa/totp", status_code=204,
                   openapi_extra=_body({"current_password": _STR, "code": _STR},
                                       ["current_password", "code"]),
                   summary="Remove the authenticator app (password and a code)")
    async def remove(request: Request) -> Response:
        principal = await authenticate(engine, request)
        data = await read_params(request)
        check_fields(data, {"current_password", "code"}, {"current_password", "code"})
        await engine.factors.remove(principal.user, data["current_password"], data["code"],
                                    client_ip(request, s))
        return Response(status_code=204, headers=NO_STORE)

    @router.post("/auth/login/mfa", openapi_extra=_body(
        {"mfa_token": _STR, "code": _STR, "passkey": {"type": "object"}}, ["mfa_token"]),
                 summary="Finish a login that answered mfa_required (a code or a passkey)")
    async def login_mfa(request: Request) -> Response:
        check_origin(request, s)  # login CSRF, as /auth/login
        data = await read_params(request)
        check_fields(data, {"mfa_token", "code", "passkey"}, {"mfa_token"})
        if ("code" in data) == ("passkey" in data):
            raise BadRequest("send a code or a passkey")
        value, rec, user = await engine.sessions.login_mfa(
            data["mfa_token"], data.get("code"), ip=client_ip(request, s),
            user_agent=request.headers.get("user-agent", ""),
            replacing=get_cookie(request, s.session_cookie), passkey=data.get("passkey"))
        return signed_in_json(engine, value, rec, user)


__all__ = ["add_mfa_routes"]
