"""The second-factor parts of the pages: the ``/account`` forms that enrol, confirm and
remove an authenticator app (the QR code is inline SVG made here by ``segno``: no external
request, nothing the page's CSP refuses), and what ``/account`` shows about it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import segno
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from authgate.engine import Engine
from authgate.errors import (
    AuthGateError,
    InsufficientUserAuthentication,
    InvalidCode,
    MfaAlreadyActive,
    Throttled,
)
from authgate.models import Principal
from authgate.web.errors import log_refusal
from authgate.web.http import client_ip

Render = Callable[..., Response]
MFA_ACTIONS = ("mfa-enrol", "mfa-confirm", "mfa-remove")
PASSKEY_ACTIONS = ("passkey-rename", "passkey-delete")


def qr_svg(uri: str) -> Markup:
    """The otpauth URI as an inline SVG QR code (escaped by segno; no script, no style)."""
    svg = segno.make(uri, error="m").svg_inline(scale=5, dark="#111", light="#fff")
    return Markup(svg.replace("<svg ", '<svg role="img" aria-label="QR code" ', 1))  # noqa: S704


async def account_context(engine: Engine, principal: Principal,
                          events: list[dict[str, Any]]) -> dict[str, Any]:
    """What ``account.html`` shows about second factors."""
    from authgate.web.passkey_routes import passkey_json

    state, left = await engine.factors.status(principal.user.id)
    keys = await engine.passkeys.user_passkeys(principal.user.id)
    return {"mfa_state": state, "recovery_left": left,
            "recovery_used": any(ev["type"] == "mfa.recovery_code_used" for ev in events),
            "passkeys": [passkey_json(k) for k in keys]}


async def passkey_action(engine: Engine, request: Request, principal: Principal, action: str,
                         form: dict[str, str], render: Render) -> Response:
    """``POST /account/passkey-rename`` and ``/account/passkey-delete``: plain forms (no
    JavaScript needed); the caller's session and CSRF token are checked. Deleting needs a
    recent sign-in: an older one is sent to sign in again and come back."""
    try:
        if action == "passkey-rename":
            await engine.passkeys.rename(principal, form.get("id", ""), form.get("name", ""))
            return RedirectResponse("/account?done=passkey-renamed", status_code=303)
        await engine.passkeys.delete(principal, form.get("id", ""),
                                     client_ip(request, engine.settings))
        return RedirectResponse("/account?done=passkey-removed", status_code=303)
    except InsufficientUserAuthentication as exc:
        log_refusal(exc)
        return RedirectResponse("/login?reauth=1&next=%2Faccount", status_code=303)
    except AuthGateError as exc:
        log_refusal(exc)
        return render("message.html", exc.status, title="Not changed", message=exc.detail)


async def mfa_action(engine: Engine, request: Request, principal: Principal, action: str,
                     form: dict[str, str], render: Render) -> Response:
    """``POST /account/mfa-*`` (the caller's session and CSRF token are checked)."""
    ip = client_ip(request, engine.settings)
    user = principal.user
    csrf = principal.csrf_token

    def enrol_page(error: str | None = None, status: int = 200, enrolment: Any = None
                   ) -> Response:
        return render("mfa_enrol.html", status, error=error, csrf=csrf,
                      secret=enrolment.secret, qr=qr_svg(enrolment.otpauth_uri),
                      uri=enrolment.otpauth_uri)

    try:
        if action == "mfa-enrol":
            enrolment = await engine.factors.pending_enrolment(user)
            if enrolment is None or form.get("restart") == "1":
                enrolment = await engine.factors.enrol(user, form.get("current_password", ""),
                                                       ip)
            return enrol_page(enrolment=enrolment)
        if action == "mfa-confirm":
            enrolment = await engine.factors.pending_enrolment(user)
            if enrolment is None:
                return RedirectResponse("/account", status_code=303)
            try:
                codes = await engine.factors.confirm(user, form.get("code", "").strip(), ip)
            except InvalidCode as exc:
                log_refusal(exc)
                return enrol_page("That code is not right. Enter the current code.", 400,
                                  enrolment)
            return render("mfa_codes.html", codes=codes)
        await engine.factors.remove(user, form.get("current_password", ""),
                                    form.get("code", ""), ip)
        return RedirectResponse("/account?done=mfa-removed", status_code=303)
    except MfaAlreadyActive:
        return RedirectResponse("/account", status_code=303)
    except Throttled as exc:
        log_refusal(exc)
        return render("message.html", 429, title="Too many attempts",
                      message=f"Try again in {exc.retry_after} seconds.")
    except AuthGateError as exc:
        log_refusal(exc)
        message = {"invalid_credentials": "The current password is wrong.",
                   "invalid_code": "That code is not right."}.get(exc.code, exc.detail)
        return render("message.html", exc.status, title="Not changed", message=message)
