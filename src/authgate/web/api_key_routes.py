"""The API-key routes: ``POST /auth/api-keys`` (the key shown once), ``GET /auth/api-keys``,
``DELETE /auth/api-keys/{id}``. Each needs a sign-in (a session cookie with CSRF, or an
access token): an API key cannot manage keys. Added to :func:`build_router`'s router."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from authgate.engine import Engine
from authgate.models import ApiKeyRecord
from authgate.web.authn import authenticate
from authgate.web.http import NO_STORE, JSONResponse, client_ip
from authgate.web.parsing import check_fields, read_params
from authgate.web.router import _body, _obj, iso

CREATE = _obj({"name": {"type": "string", "minLength": 1, "maxLength": 100},
               "scopes": {"type": "array", "items": {"type": "string"}},
               "expires_in": {"type": "integer", "minimum": 1}}, ["name"])


def api_key_json(rec: ApiKeyRecord) -> dict[str, Any]:
    return {"id": rec.id, "name": rec.name, "scopes": list(rec.scopes),
            "created_at": iso(rec.created_at),
            "expires_at": iso(rec.expires_at) if rec.expires_at is not None else None,
            "last_used_at": iso(rec.last_used_at) if rec.last_used_at else None}


def add_api_key_routes(router: APIRouter, engine: Engine) -> None:
    s = engine.settings
    keys = engine.api_keys

    @router.post("/auth/api-keys", status_code=201, openapi_extra=_body(CREATE),
                 summary="Create an API key (shown once, in this response only)")
    async def create(request: Request) -> Response:
        principal = await authenticate(engine, request)
        keys.require_interactive(principal)
        data = await read_params(request)
        check_fields(data, {"name", "scopes", "expires_in"}, {"name"})
        key, rec = await keys.create_for_caller(
            principal, data["name"], data.get("scopes"), data.get("expires_in"),
            ip=client_ip(request, s), user_agent=request.headers.get("user-agent", ""))
        return JSONResponse({**api_key_json(rec), "key": key}, status_code=201,
                            headers=NO_STORE)

    @router.get("/auth/api-keys", summary="The caller's API keys (never the keys themselves)")
    async def list_keys(request: Request) -> Response:
        principal = await authenticate(engine, request)
        keys.require_interactive(principal)
        return JSONResponse([api_key_json(k) for k in await keys.user_keys(principal.user.id)],
                            headers=NO_STORE)

    @router.delete("/auth/api-keys/{key_id}", status_code=204, summary="Revoke an API key")
    async def revoke(request: Request, key_id: str) -> Response:
        principal = await authenticate(engine, request)
        keys.require_interactive(principal)
        await keys.revoke(principal.user.id, key_id, ip=client_ip(request, s))
        return Response(status_code=204, headers=NO_STORE)
