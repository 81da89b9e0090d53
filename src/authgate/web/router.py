"""The ``/auth/*`` API of the contract as a FastAPI ``APIRouter`` (what ``gate.router`` is).

Every route parses its own body (so it behaves the same inside a user's app, whatever
exception handlers that app has) and every :class:`AuthGateError` becomes the contract's
JSON error in :class:`AuthRoute` (by :func:`authgate.web.errors.to_response`).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from authgate.engine import Engine
from authgate.errors import (
    AuthGateError,
    BadRequest,
    InvalidRequest,
    UnsupportedGrantType,
)
from authgate.models import SessionRecord, TokenPair, User
from authgate.web.authn import authenticate, bearer_token
from authgate.web.errors import OAUTH_PATHS, to_response
from authgate.web.hot_routes import hot_handlers
from authgate.web.http import (
    NO_STORE,
    JSONResponse,
    check_origin,
    clear_cookie,
    clear_session_cookie,
    client_ip,
    get_cookie,
    set_cookie,
    set_session_cookie,
)
from authgate.web.mfa_routes import add_mfa_routes
from authgate.web.parsing import check_fields, read_params
from authgate.web.passkey_routes import add_passkey_routes


class AuthRoute(APIRoute):
    """Maps engine errors onto the contract's JSON errors, inside any FastAPI app."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        oauth = self.path in OAUTH_PATHS

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except AuthGateError as exc:
                return to_response(exc, oauth=oauth,
                                   token_sent=bearer_token(request) is not None)

        return route


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def user_json(user: User) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "roles": list(user.roles),
            "email": user.email, "email_verified": user.email_verified,
            "created_at": iso(user.created_at)}


def set_device_cookie(response: Response, engine: Engine, user_id: str) -> None:
    """After a successful sign-in: a new device cookie (login throttling of a known browser,
    see :meth:`Engine.device_cookie`), long-lived, HttpOnly, SameSite=Strict."""
    s = engine.settings
    set_cookie(response, s.device_cookie, engine.signin.device_cookie(user_id),
               secure=s.cookie_secure, max_age=s.device_cookie_ttl, samesite="strict")


def signed_in_json(engine: Engine, value: str, rec: SessionRecord, user: User) -> Response:
    """``POST /auth/login``'s answer (also the second step's): the user, the CSRF token,
    the session cookie and a new device cookie."""
    response = JSONResponse({"user": user_json(user), "csrf_token": rec.csrf_token},
                            headers=NO_STORE)
    set_session_cookie(response, engine.settings, value, rec)
    set_device_cookie(response, engine, user.id)
    return response


def _body(schema: dict[str, Any], form: bool = False) -> dict[str, Any]:
    content = {"application/json": {"schema": schema}}
    if form:
        content["application/x-www-form-urlencoded"] = {"schema": schema}
    return {"requestBody": {"required": True, "content": content}}


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required,
            "additionalProperties": False}


_STR = {"type": "string"}
CREDENTIALS = _obj({"username": _STR, "password": {"type": "string", "format": "password"}},
                   ["username", "password"])
REGISTER = _obj({**CREDENTIALS["properties"], "email": {"type": "string", "format": "email"}},
                ["username", "password"])
LOGIN = _obj({**CREDENTIALS["properties"], "remember": {"type": "boolean"}},
             ["username", "password"])
PASSWORD = _obj({"current_password": _STR, "new_password": _STR},
                ["current_password", "new_password"])
MFA_GRANT = "urn:authgate:grant-type:mfa"
PASSKEY_GRANT = "urn:authgate:grant-type:passkey"
TOKEN = _obj({"grant_type": {"type": "string",
                             "enum": ["password", "refresh_token", MFA_GRANT,
                                      PASSKEY_GRANT]},
              "username": _STR, "password": _STR, "refresh_token": _STR, "scope": _STR,
              "mfa_token": _STR, "code": _STR, "passkey": _STR, "cookie": {"type": "boolean"}},
             ["grant_type"])
REVOKE = _obj({"token": _STR, "token_type_hint": _STR}, ["token"])


def build_router(engine: Engine) -> APIRouter:
    """The contract's ``/auth/*`` routes and the JWKS, bound to ``engine``."""
    s = engine.settings
    router = APIRouter(route_class=AuthRoute, tags=["auth"])

    def clear_sent_cookies(request: Request, response: Response) -> None:
        """Clear the credential cookies this request carried (the refresh cookie travels
        only to /auth/token, so it goes with the access-token cookie)."""
        if get_cookie(request, s.session_cookie) is not None:
            clear_session_cookie(response, s)
        if get_cookie(request, s.access_cookie) is not None:
            clear_cookie(response, s.access_cookie, secure=s.cookie_secure)
            clear_cookie(response, s.refresh_cookie, secure=s.cookie_secure,
                         path="/auth/token", samesite="strict")

    @router.post("/auth/register", status_code=201, openapi_extra=_body(REGISTER),
                 summary="Create a user (when open registration is on)")
    async def register(request: Request) -> Response:
        data = await read_params(request)
        check_fields(data, {"username", "password", "email"}, {"username", "password"})
        user = await engine.account.register(data["username"], data["password"],
                                             data.get("email"), ip=client_ip(request, s))
        return JSONResponse(user_json(user), status_code=201, headers=NO_STORE)

    @router.post("/auth/login", openapi_extra=_body(LOGIN),
                 summary="Start a session (sets the session cookie)")
    async def login(request: Request) -> Response:
        check_origin(request, s)  # login CSRF
        data = await read_params(request)
        check_fields(data, {"username", "password", "remember"}, {"username", "password"})
        remember = data.get("remember", False)
        if not isinstance(remember, bool):
            raise BadRequest("remember must be true or false")
        value, rec, user = await engine.sessions.login(
            data["username"], data["password"], remember=remember,
            ip=client_ip(request, s), user_agent=request.headers.get("user-agent", ""),
            device=get_cookie(request, s.device_cookie),
            replacing=get_cookie(request, s.session_cookie))
        return signed_in_json(engine, value, rec, user)

    @router.post("/auth/logout", status_code=204, summary="End the current session")
    async def logout(request: Request) -> Response:
        principal = await authenticate(engine, request)
        await engine.sessions.logout(principal)
        response = Response(status_code=204, headers=NO_STORE)
        clear_sent_cookies(request, response)
        return response

    hot = hot_handlers(engine)
    router.add_api_route("/auth/me", hot["/auth/me"], methods=["GET"],
                         summary="The caller, by session or bearer token")

    from authgate.web.signin_routes import add_signin_routes

    add_signin_routes(router, engine, clear_sent_cookies)

    @router.post("/auth/password", status_code=204, openapi_extra=_body(PASSWORD),
                 summary="Change the password; every other session and family ends")
    async def password(request: Request) -> Response:
        principal = await authenticate(engine, request)
        data = await read_params(request)
        check_fields(data, {"current_password", "new_password"},
                     {"current_password", "new_password"})
        rotated = await engine.sessions.change_password(principal, data["current_password"],
                                               data["new_password"], client_ip(request, s))
        response = Response(status_code=204, headers=NO_STORE)
        if rotated is not None:
            set_session_cookie(response, s, *rotated)
        return response

    @router.post("/auth/token", openapi_extra=_body(TOKEN, form=True),
                 summary="OAuth 2.0 token endpoint (password and refresh_token grants)")
    async def token(request: Request) -> Response:
        data = await read_params(request, allow_form=True)
        # client_id/client_secret: sent by OAuth tools such as Swagger UI; authgate's
        # clients are public (RFC 6749 §2.1), so they are accepted and not used.
        check_fields(data, {"grant_type", "username", "password", "refresh_token", "scope",
                            "cookie", "client_id", "client_secret", "mfa_token", "code",
                            "passkey"})
        grant = data.get("grant_type")
        if grant != MFA_GRANT and ("mfa_token" in data or "code" in data):
            raise InvalidRequest("mfa_token and code belong to the mfa grant only")
        if grant not in (MFA_GRANT, PASSKEY_GRANT) and "passkey" in data:
            raise InvalidRequest("passkey belongs to the mfa and passkey grants only")
        cookie = data.get("cookie", False)
        if cookie in ("1", "true"):
            cookie = True
        elif cookie in ("0", "false", ""):
            cookie = False
        if not isinstance(cookie, bool):
            raise InvalidRequest("cookie must be true or false")
        if cookie:  # the response sets credential cookies: login CSRF / identity swap
            check_origin(request, s)
        ip = client_ip(request, s)
        if grant == "password":
            if "username" not in data or "password" not in data:
                raise InvalidRequest("username and password are required")
            pair = await engine.grants.password_grant(
                data["username"], data["password"], data.get("scope"), ip=ip,
                user_agent=request.headers.get("user-agent", ""),
                device=get_cookie(request, s.device_cookie))
        elif grant == "refresh_token":
            refresh = data.get("refresh_token")
            if refresh is None:
                refresh = get_cookie(request, s.refresh_cookie)
                if refresh is None:
                    raise InvalidRequest("refresh_token is required")
                check_origin(request, s)
                cookie = True
                pair = await engine.grants.refresh_grant(
                    refresh, ip=ip, csrf=request.headers.get("x-csrf-token", ""))
            else:
                pair = await engine.grants.refresh_grant(refresh, ip=ip)
        elif grant == MFA_GRANT:
            if "mfa_token" not in data or ("code" in data) == ("passkey" in data):
                raise InvalidRequest("mfa_token and a code or a passkey are required")
            pair = await engine.grants.mfa_grant(
                data["mfa_token"], data.get("code"), ip=ip,
                user_agent=request.headers.get("user-agent", ""), passkey=data.get("passkey"))
        elif grant == PASSKEY_GRANT:
            if "passkey" not in data:
                raise InvalidRequest("passkey is required")
            pair = await engine.grants.passkey_grant(
                data["passkey"], data.get("scope"), ip=ip,
                user_agent=request.headers.get("user-agent", ""))
        elif grant is None:
            raise InvalidRequest("grant_type is required")
        else:
            raise UnsupportedGrantType()
        response = token_response(pair, cookie)
        if grant in ("password", MFA_GRANT, PASSKEY_GRANT):
            set_device_cookie(response, engine, pair.claims["sub"])
        return response

    def token_response(pair: TokenPair, cookie: bool) -> Response:
        body: dict[str, Any] = {"token_type": "Bearer", "expires_in": pair.expires_in,
                                "scope": pair.scope}
        if not cookie:
            body.update(access_token=pair.access_token, refresh_token=pair.refresh_token)
            return JSONResponse(body, headers=NO_STORE)
        body["csrf_token"] = engine.grants.token_csrf(pair.family_id)
        response = JSONResponse(body, headers=NO_STORE)
        set_cookie(response, s.access_cookie, pair.access_token, secure=s.cookie_secure,
                   max_age=pair.expires_in)
        set_cookie(response, s.refresh_cookie, pair.refresh_token, secure=s.cookie_secure,
                   max_age=int(s.refresh_token_ttl), path="/auth/token", samesite="strict")
        return response

    @router.post("/auth/revoke", openapi_extra=_body(REVOKE, form=True),
                 summary="RFC 7009 token revocation")
    async def revoke(request: Request) -> Response:
        data = await read_params(request, allow_form=True)
        check_fields(data, {"token", "token_type_hint", "client_id"})
        if not isinstance(data.get("token"), str) or not data["token"]:
            raise InvalidRequest("token is required")
        await engine.grants.revoke_token(data["token"], ip=client_ip(request, s))
        return Response(status_code=200, headers=NO_STORE)

    router.add_api_route("/auth/verify", hot["/auth/verify"], methods=["GET"],
                         summary="Forward-auth for reverse proxies")
    router.add_api_route("/.well-known/jwks.json", hot["/.well-known/jwks.json"],
                         methods=["GET"], summary="Public signing keys (JWKS)")
    add_mfa_routes(router, engine)
    add_passkey_routes(router, engine)

    from authgate.web.api_key_routes import add_api_key_routes

    add_api_key_routes(router, engine)

    from authgate.web.account_routes import add_account_routes

    add_account_routes(router, engine, clear_sent_cookies)
    return router


__all__ = ["AuthRoute", "build_router"]
