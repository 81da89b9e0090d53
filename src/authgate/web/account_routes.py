"""The account lifecycle's ``/auth/*`` routes (contract §7): verification, address change,
forgotten password and reset, account deletion. Added to :func:`build_router`'s router."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from authgate.engine import Engine
from authgate.web.authn import authenticate
from authgate.web.http import NO_STORE, JSONResponse, client_ip
from authgate.web.parsing import check_fields, read_params
from authgate.web.router import _body, _obj, user_json

_STR = {"type": "string"}
TOKEN = _obj({"token": _STR}, ["token"])
CHANGE = _obj({"email": {"type": "string", "format": "email"}, "current_password": _STR},
              ["email", "current_password"])
FORGOT = _obj({"email": {"type": "string", "format": "email"}}, ["email"])
RESET = _obj({"token": _STR, "new_password": _STR}, ["token", "new_password"])
DELETE = _obj({"current_password": _STR}, ["current_password"])

#: The one body of ``POST /auth/password/forgot``, whether or not the address is known.
FORGOT_BODY = {"status": "accepted",
               "detail": "If an account has this address, a reset link is on its way."}


def accepted(detail: str) -> Response:
    return JSONResponse({"status": "accepted", "detail": detail}, status_code=202,
                        headers=NO_STORE)


def add_account_routes(router: APIRouter, engine: Engine,
                       clear_sent_cookies: Callable[[Request, Response], None]) -> None:
    s = engine.settings
    account = engine.account

    async def fields(request: Request, names: set[str]) -> dict[str, Any]:
        data = await read_params(request)
        check_fields(data, names, names)
        return data

    @router.post("/auth/email/verification", status_code=202,
                 summary="Mail a new verification link to the caller's address")
    async def send_verification(request: Request) -> Response:
        principal = await authenticate(engine, request)
        await account.send_verification(principal)
        return accepted("A verification link is on its way.")

    @router.post("/auth/email/verify", openapi_extra=_body(TOKEN),
                 summary="Verify an address with the token from its mail")
    async def verify(request: Request) -> Response:
        data = await fields(request, {"token"})
        user = await account.verify(data["token"])
        return JSONResponse(user_json(user), headers=NO_STORE)

    @router.put("/auth/email", status_code=202, openapi_extra=_body(CHANGE),
                summary="Change the address (takes effect when the new one is confirmed)")
    async def change(request: Request) -> Response:
        principal = await authenticate(engine, request)
        data = await fields(request, {"email", "current_password"})
        await account.request_change(principal, data["email"], data["current_password"],
                                     client_ip(request, s))
        return accepted("A confirmation link is on its way to the new address.")

    @router.post("/auth/password/forgot", status_code=202, openapi_extra=_body(FORGOT),
                 summary="Mail a password-reset link (the same answer for any address)")
    async def forgot(request: Request) -> Response:
        data = await fields(request, {"email"})
        await account.forgot(data["email"], client_ip(request, s))
        return JSONResponse(FORGOT_BODY, status_code=202, headers=NO_STORE)

    @router.post("/auth/password/reset", status_code=204, openapi_extra=_body(RESET),
                 summary="Set a new password with the token from the reset mail")
    async def reset(request: Request) -> Response:
        data = await fields(request, {"token", "new_password"})
        await account.reset(data["token"], data["new_password"])
        return Response(status_code=204, headers=NO_STORE)

    @router.delete("/auth/account", status_code=204, openapi_extra=_body(DELETE),
                   summary="Delete the caller's account and everything it holds")
    async def delete(request: Request) -> Response:
        principal = await authenticate(engine, request)
        data = await fields(request, {"current_password"})
        await account.delete(principal, data["current_password"], client_ip(request, s))
        response = Response(status_code=204, headers=NO_STORE)
        clear_sent_cookies(request, response)
        return response


__all__ = ["FORGOT_BODY", "add_account_routes"]
