"""The admin API (``/admin/*``): users — search, create, show, update, delete, set a
password, reset second factors — and each user's sign-in list and audit events, for a
caller whose credential carries the ``authgate:admin`` scope. ``gate.admin_router``;
``authgate serve`` includes it.

Every route authenticates first (401; a cookie-authenticated unsafe request is CSRF-checked
there, 403 ``csrf``), then checks the scope (403 ``insufficient_scope``), and only then
reads its input: a caller without the scope learns nothing about the users or about what
the body should be. Bodies are read by the API's one strict parser (no key given twice,
64 KiB) and then validated by their pydantic model, whose JSON schema is what OpenAPI
shows. The work is :class:`authgate.core.admin.Admin`'s: the same core functions as the
CLI."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from authgate.core.admin import UserDetails
from authgate.engine import Engine
from authgate.errors import BadRequest
from authgate.events import Actor, AuthEvent
from authgate.models import Principal, User
from authgate.web.api_key_routes import api_key_json
from authgate.web.authn import authenticate
from authgate.web.http import NO_STORE, JSONResponse, clear_cookie, client_ip
from authgate.web.parsing import read_params
from authgate.web.router import AuthRoute, iso, user_json
from authgate.web.signin_routes import entry_json


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CreateUser(_Body):
    """``POST /admin/users``: without ``password`` the account gets a random one nobody
    knows (the user sets theirs with forgot-password, or an admin sets one)."""

    username: str
    password: str | None = Field(default=None, json_schema_extra={"format": "password"})
    email: str | None = None
    roles: list[str] | None = None
    email_verified: bool = False


class UpdateUser(_Body):
    """``PATCH /admin/users/{id}``: each field given is set; takes effect like a
    revocation (within 1 s on every instance)."""

    disabled: bool | None = None
    roles: list[str] | None = None


class SetPassword(_Body):
    """``POST /admin/users/{id}/password``: every sign-in of the user ends."""

    password: str = Field(json_schema_extra={"format": "password"})


class CreateApiKey(_Body):
    """``POST /admin/users/{id}/api-keys``: as ``POST /auth/api-keys``, for the user (scopes:
    at most what their roles grant; omitted: all of them)."""

    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] | None = None
    expires_in: int | None = Field(default=None, ge=1)


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema()}}}}


M = TypeVar("M", bound=BaseModel)


async def _read(request: Request, model: type[M]) -> M:
    data = await read_params(request)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadRequest(f"{where}: {first['msg']}") from None


def admin_user_json(user: User) -> dict[str, Any]:
    return {**user_json(user), "disabled": user.disabled}


def details_json(d: UserDetails) -> dict[str, Any]:
    last = d.last_sign_in
    return {**admin_user_json(d.user),
            "factors": {"totp": d.totp, "recovery_codes_left": d.recovery_codes_left},
            "last_sign_in": None if last is None else {
                "at": iso(last.at), "ip": last.ip, "method": last.data.get("method"),
                "amr": last.data.get("amr")}}


def event_json(event_id: int, e: AuthEvent) -> dict[str, Any]:
    return {"id": event_id, **e.to_json(), "at": iso(e.at)}


_LIST = "Users (search q: username or address contains it; a page per cursor)"
_Q = Query(None, description="part of a username or address")
_CURSOR = Query(None, description="next_cursor of the previous page")
_LIMIT = Query(None, description="page size, 1 to 200 (default 50)")


def build_admin_router(engine: Engine) -> APIRouter:
    s = engine.settings
    admin = engine.admin
    router = APIRouter(route_class=AuthRoute, tags=["admin"])

    async def caller(request: Request) -> tuple[Principal, Actor]:
        principal = await authenticate(engine, request)
        admin.check(principal)
        return principal, Actor("admin", principal.user.id, client_ip(request, s),
                                request.headers.get("user-agent", ""))

    def done() -> Response:
        return Response(status_code=204, headers=NO_STORE)

    @router.get("/admin/users", summary=_LIST)
    async def list_users(request: Request, q: str | None = _Q, cursor: str | None = _CURSOR,
                         limit: str | None = _LIMIT) -> Response:
        await caller(request)
        found, next_cursor = await admin.search(q, cursor, limit)
        return JSONResponse({"users": [admin_user_json(u) for u in found],
                             "next_cursor": next_cursor}, headers=NO_STORE)

    @router.post("/admin/users", status_code=201, openapi_extra=_schema(CreateUser),
                 summary="Create a user (as `authgate users create`)")
    async def create_user(request: Request) -> Response:
        _, actor = await caller(request)
        body = await _read(request, CreateUser)
        user = await admin.create(actor, body.username, body.password, body.email,
                                  body.roles, body.email_verified)
        return JSONResponse(admin_user_json(user), status_code=201, headers=NO_STORE)

    @router.get("/admin/users/{user_id}",
                summary="A user: disabled, roles, second factors, last sign-in")
    async def show_user(request: Request, user_id: str) -> Response:
        await caller(request)
        return JSONResponse(details_json(await admin.details(await admin.user(user_id))),
                            headers=NO_STORE)

    @router.patch("/admin/users/{user_id}", openapi_extra=_schema(UpdateUser),
                  summary="Disable / enable a user, set their roles (like a revocation)")
    async def update_user(request: Request, user_id: str) -> Response:
        _, actor = await caller(request)
        body = await _read(request, UpdateUser)
        user = await admin.update(actor, await admin.user(user_id), disabled=body.disabled,
                                  roles=body.roles)
        return JSONResponse(admin_user_json(user), headers=NO_STORE)

    @router.delete("/admin/users/{user_id}", status_code=204,
                   summary="Delete a user and everything they hold")
    async def delete_user(request: Request, user_id: str) -> Response:
        _, actor = await caller(request)
        await admin.delete(actor, await admin.user(user_id))
        return done()

    @router.post("/admin/users/{user_id}/password", status_code=204,
                 openapi_extra=_schema(SetPassword),
                 summary="Set a user's password (every sign-in of theirs ends)")
    async def set_password(request: Request, user_id: str) -> Response:
        _, actor = await caller(request)
        body = await _read(request, SetPassword)
        await admin.set_password(actor, await admin.user(user_id), body.password)
        return done()

    @router.post("/admin/users/{user_id}/mfa-reset", status_code=204,
                 summary="Remove a user's second factors (every sign-in of theirs ends)")
    async def mfa_reset(request: Request, user_id: str) -> Response:
        _, actor = await caller(request)
        await admin.mfa_reset(actor, await admin.user(user_id))
        return done()

    @router.post("/admin/users/{user_id}/api-keys", status_code=201,
                 openapi_extra=_schema(CreateApiKey),
                 summary="Create an API key for a user (shown once, in this response only)")
    async def create_api_key(request: Request, user_id: str) -> Response:
        principal, actor = await caller(request)
        body = await _read(request, CreateApiKey)
        key, rec = await admin.create_api_key(principal, actor, await admin.user(user_id),
                                              body.name, body.scopes, body.expires_in)
        return JSONResponse({**api_key_json(rec), "key": key}, status_code=201,
                            headers=NO_STORE)

    @router.get("/admin/users/{user_id}/sessions",
                summary="A user's sessions and token families (one list)")
    async def sessions(request: Request, user_id: str) -> Response:
        principal, _ = await caller(request)
        entries = await admin.sign_ins(principal, await admin.user(user_id))
        return JSONResponse([entry_json(e) for e in entries], headers=NO_STORE)

    @router.delete("/admin/users/{user_id}/sessions", status_code=204,
                   summary="End every session, token family and access token of a user")
    async def revoke_all(request: Request, user_id: str) -> Response:
        principal, actor = await caller(request)
        await admin.revoke(actor, await admin.user(user_id))
        response = done()
        if principal.session is not None and principal.user.id == user_id:
            clear_cookie(response, s.session_cookie, secure=s.cookie_secure)
        return response

    @router.delete("/admin/users/{user_id}/sessions/{entry_id}", status_code=204,
                   summary="End one entry of a user's list")
    async def revoke_one(request: Request, user_id: str, entry_id: str) -> Response:
        principal, actor = await caller(request)
        await admin.revoke(actor, await admin.user(user_id), entry_id)
        response = done()
        if principal.session is not None and principal.session.id == entry_id:
            clear_cookie(response, s.session_cookie, secure=s.cookie_secure)
        return response

    @router.get("/admin/users/{user_id}/audit",
                summary="A user's audit events, newest first (also after deletion)")
    async def audit(request: Request, user_id: str, cursor: str | None = _CURSOR,
                    limit: str | None = _LIMIT) -> Response:
        await caller(request)
        found, next_cursor = await admin.events(user_id, cursor, limit)
        return JSONResponse({"events": [event_json(i, e) for i, e in found],
                             "next_cursor": next_cursor}, headers=NO_STORE)

    return router


_SUBS = frozenset({"sessions", "audit", "password", "mfa-reset", "api-keys"})


def admin_route_label(path: str) -> str:
    """The route of an ``/admin/`` path, for metrics (never an id)."""
    parts = path.split("/")[1:]
    if parts[:2] != ["admin", "users"] or len(parts) > 5:
        return "other"
    if len(parts) == 2:
        return "/admin/users"
    if len(parts) == 3:
        return "/admin/users/{id}"
    if parts[3] not in _SUBS:
        return "other"
    if len(parts) == 5:
        return "/admin/users/{id}/sessions/{id}" if parts[3] == "sessions" else "other"
    return f"/admin/users/{{id}}/{parts[3]}"


__all__ = ["CreateApiKey", "CreateUser", "SetPassword", "UpdateUser", "admin_route_label",
           "build_admin_router"]
