"""The API-key part of ``/account``: the form that creates a key (shown once, on the page
that answers it, never again) — a key's revocation is the sign-in list's Revoke button. No
JavaScript; CSRF-checked like every ``/account`` form (by the caller)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from authgate.engine import Engine
from authgate.errors import AuthGateError
from authgate.models import Principal
from authgate.web.errors import log_refusal
from authgate.web.http import client_ip

Render = Callable[..., Response]
API_KEY_ACTIONS = ("api-key-create",)
#: The form's expiry choices, in days ("" = never).
EXPIRY_DAYS = ("30", "90", "365", "")


def api_key_context(principal: Principal) -> dict[str, Any]:
    """What ``account.html`` needs to offer a new key: the scopes it may hold."""
    return {"key_scopes": list(principal.scopes), "expiry_days": EXPIRY_DAYS}


async def api_key_action(engine: Engine, request: Request, principal: Principal,
                         form: dict[str, str], render: Render) -> Response:
    """``POST /account/api-key-create``: ``name``, ``expires_days`` (30, 90, 365 or empty
    for never) and one ``scope:<name>`` checkbox per scope wanted (a form field appears
    once: the page's parser refuses repeated names)."""
    scopes = [s for s in principal.scopes if form.get(f"scope:{s}") == "1"]
    days = form.get("expires_days", "")
    if days not in EXPIRY_DAYS:
        days = "30"
    try:
        key, rec = await engine.api_keys.create_for_caller(
            principal, form.get("name", ""), scopes,
            int(days) * 86400 if days else None, ip=client_ip(request, engine.settings),
            user_agent=request.headers.get("user-agent", ""))
    except AuthGateError as exc:
        exc.reason = f"account form: {exc.reason or exc.code}"
        log_refusal(exc)
        return render("message.html", exc.status if exc.status != 401 else 400,
                      title="Not done", message=exc.detail, back=("/account", "Back"))
    return render("api_key_created.html", key=key, key_name=rec.name, scopes=list(rec.scopes),
                  expires_days=days)
