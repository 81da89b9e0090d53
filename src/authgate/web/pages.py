"""Server-rendered pages: ``/login`` and ``/account`` (Jinja2, no JavaScript needed).

Login CSRF: ``GET /login`` sets a short-lived pre-login cookie holding a random nonce and
puts ``HMAC(server secret, nonce)`` in the form (signed double submit); ``POST /login``
needs both to match and a same-origin request. Account actions are plain form POSTs that
carry the session's CSRF token in a hidden field.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from typing import Any
from urllib.parse import quote, urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from authgate.engine import Engine
from authgate.errors import (
    AuthGateError,
    BadRequest,
    CsrfError,
    InvalidCode,
    MfaRequired,
    NotAuthenticated,
    NotFound,
    Throttled,
)
from authgate.models import Principal
from authgate.next_url import local_path, safe_target
from authgate.web.api_key_pages import API_KEY_ACTIONS, api_key_action, api_key_context
from authgate.web.authn import authenticate
from authgate.web.errors import log_refusal
from authgate.web.http import (
    check_csrf,
    check_origin,
    clear_cookie,
    clear_session_cookie,
    client_ip,
    get_cookie,
    set_cookie,
    set_session_cookie,
)
from authgate.web.mfa_pages import (
    MFA_ACTIONS,
    PASSKEY_ACTIONS,
    account_context,
    mfa_action,
    passkey_action,
)
from authgate.web.parsing import read_form as read_form_fields
from authgate.web.router import iso, set_device_cookie

_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": _CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
#: The pages that load /static/passkeys.js (and only that: no inline script) get
#: ``script-src 'self'; connect-src 'self'``; every other page still allows no script.
SCRIPTED_PAGES = frozenset({"login.html", "login_mfa.html", "account.html"})
SCRIPTED_HEADERS = {**PAGE_HEADERS, "Content-Security-Policy":
                    "default-src 'none'; script-src 'self'; connect-src 'self'; "
                    + _CSP.removeprefix("default-src 'none'; ")}

# The pre-login nonce is "<issued at>.<random>": valid for an hour, and reused by every view
# of /login in its first half hour (so a form is never older than its nonce allows).
NONCE_TTL = 3600
NONCE_REUSE = NONCE_TTL // 2
_NONCE = re.compile(r"^[0-9]{1,12}\.[A-Za-z0-9_-]{32}$")

_env = Environment(loader=PackageLoader("authgate", "templates"),
                   autoescape=select_autoescape(["html"]), enable_async=False)


# What the account page calls each event (the user's own recent ones, newest first).
EVENT_WORDS = {
    "sign_in.succeeded": "Signed in", "sign_in.failed": "Failed sign-in attempt",
    "sign_in.throttled": "Sign-in attempts paused", "sign_out": "Signed out",
    "sign_out.everywhere": "Signed out everywhere", "session.revoked": "Session revoked",
    "family.revoked": "API token revoked", "password.changed": "Password changed",
    "refresh.reuse_detected": "A stolen API token was stopped", "user.created": "Account created",
    "user.disabled": "Account disabled", "user.enabled": "Account enabled",
    "user.roles_changed": "Roles changed", "mfa.enabled": "Authenticator app added",
    "mfa.disabled": "Authenticator app removed", "mfa.failed": "Wrong sign-in code",
    "mfa.recovery_code_used": "Recovery code used", "passkey.added": "Passkey added",
    "passkey.removed": "Passkey removed",
    "passkey.counter_mismatch": "A passkey's counter went backwards (sign-in refused)",
    "email.verification_sent": "Verification mail sent", "email.verified": "Email address verified",
    "email.change_requested": "Address change requested", "email.changed": "Address changed",
    "password.reset_requested": "Password reset requested", "password.reset": "Password reset",
}


def safe_next(value: str | None) -> str:
    """A local path to go to after login; anything else (another host, a scheme, ``//``,
    backslashes, control characters) becomes ``/account``."""
    return local_path(value) or "/account"


def sso_page_headers(cookie_domain: str, secure: bool,
                     base: dict[str, str] = PAGE_HEADERS) -> dict[str, str]:
    """The pages' headers when a sign-in may lead to another host of ``COOKIE_DOMAIN``:
    Chromium applies ``form-action`` to the redirect that follows the login form's POST."""
    schemes = ("https",) if secure else ("https", "http")
    sources = " ".join(f"{scheme}://{host}:*" for scheme in schemes
                       for host in (cookie_domain, f"*.{cookie_domain}"))
    csp = base["Content-Security-Policy"].replace(
        "form-action 'self'", f"form-action 'self' {sources}")
    return {**base, "Content-Security-Policy": csp}


def build_pages(engine: Engine) -> list[BaseRoute]:
    s = engine.settings
    login_cookie = f"{s.cookie_prefix}authgate-login"
    headers, scripted = ((PAGE_HEADERS, SCRIPTED_HEADERS) if s.cookie_domain is None else (
        sso_page_headers(s.cookie_domain, s.cookie_secure),
        sso_page_headers(s.cookie_domain, s.cookie_secure, SCRIPTED_HEADERS)))
    public_host = urlsplit(s.public_url).hostname or ""

    def next_of(value: str | None) -> str:
        """``next=`` checked: a local path, or a URL under ``COOKIE_DOMAIN`` when set."""
        return safe_target(value, public_host=public_host, cookie_domain=s.cookie_domain,
                           secure=s.cookie_secure)

    def render(name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        html = _env.get_template(name).render(**ctx)
        return HTMLResponse(html, status_code=status,
                            headers=scripted if name in SCRIPTED_PAGES else headers)

    async def read_form(request: Request) -> dict[str, str] | None:
        """The form's fields; None for one that breaks the parser's rules (a field given
        twice, not UTF-8): no browser sends those."""
        try:
            return await read_form_fields(request)
        except BadRequest:
            return None

    def unreadable() -> Response:
        return render("message.html", 400, title="Request refused",
                      message="That form could not be read.")

    def form_nonce(request: Request, reuse_for: float) -> str | None:
        """The request's pre-login nonce when it is one of ours and younger than
        ``reuse_for`` seconds; None otherwise."""
        nonce = get_cookie(request, login_cookie)
        if not nonce or not _NONCE.match(nonce):
            return None
        age = engine.clock.now() - int(nonce.split(".", 1)[0])
        return nonce if -60 <= age < reuse_for else None

    def login_form(request: Request, error: str | None = None, status: int = 200,
                   username: str = "", keep_nonce: str | None = None) -> Response:
        """The form, bound to the request's still-valid nonce when it has one (another view
        of /login — a second tab, a prefetch, a favicon sent through sign-in by a proxy —
        must not make the form already on screen fail as "expired"), else to a new one in a
        new cookie. With ``keep_nonce`` (the nonce a refused request carried, or "") no
        cookie is set and the form is bound to that nonce, if any."""
        nonce = keep_nonce if keep_nonce is not None else form_nonce(request, NONCE_REUSE)
        fresh = keep_nonce is None and nonce is None
        if nonce is None:
            nonce = f"{int(engine.clock.now())}.{secrets.token_urlsafe(24)}"
        response = render("login.html", status, error=error, username=username,
                          next=next_of(request.query_params.get("next")),
                          reauth=request.query_params.get("reauth") == "1",
                          register=s.open_registration, done=request.query_params.get("done"),
                          form_token=engine.macs.mac("login-form", nonce) if nonce else "")
        if fresh:
            set_cookie(response, login_cookie, nonce, secure=s.cookie_secure,
                       max_age=NONCE_TTL)
        return response

    async def login_page(request: Request) -> Response:
        if request.method == "GET":
            return login_form(request)
        form = await read_form(request)
        if form is None:
            return unreadable()
        nonce = form_nonce(request, NONCE_TTL) or ""
        try:
            check_origin(request, s)
        except CsrfError as exc:  # cross-site: refused, with no cookie at all (a new nonce
            # cookie would replace the one of the victim's open sign-in tab)
            log_refusal(exc)
            return login_form(request, "That sign-in came from another site and was "
                              "refused. Please sign in here.", 403, keep_nonce=nonce)
        try:
            check_csrf(request, s, engine.macs.mac("login-form", nonce) if nonce else None,
                       sent=form.get("form_token", ""))
        except CsrfError as exc:
            exc.reason = f"login form: {'no nonce cookie' if not nonce else exc.reason}"
            log_refusal(exc)
            return login_form(request, "This form expired or came from another site. "
                              "Please try again.", 403)
        username = form.get("username", "")
        try:
            value, rec, user = await engine.sessions.login(
                username, form.get("password", ""), remember=form.get("remember") == "on",
                ip=client_ip(request, s), user_agent=request.headers.get("user-agent", ""),
                device=get_cookie(request, s.device_cookie),
                replacing=get_cookie(request, s.session_cookie))
        except MfaRequired as exc:  # the second step: same nonce, the mfa_token
            return render("login_mfa.html", 200, mfa_token=exc.mfa_token,
                          next=next_of(form.get("next")), passkey="passkey" in exc.methods,
                          form_token=engine.macs.mac("login-form", nonce))
        except Throttled as exc:
            log_refusal(exc)
            return login_form(request, "Too many attempts. Try again in "
                              f"{exc.retry_after} seconds.", 429, username)
        except AuthGateError as exc:
            exc.reason = "login form: " + (exc.reason or exc.code)
            log_refusal(exc)
            return login_form(request, "Invalid username or password.", 401, username)
        return signed_in(form, value, rec, user.id)

    def signed_in(form: dict[str, str], value: str, rec: Any, user_id: str) -> Response:
        response = RedirectResponse(next_of(form.get("next")), status_code=303,
                                    headers={"Cache-Control": "no-store"})
        set_session_cookie(response, s, value, rec)
        set_device_cookie(response, engine, user_id)
        clear_cookie(response, login_cookie, secure=s.cookie_secure)
        return response

    async def login_mfa_page(request: Request) -> Response:
        """The form's second step: the code, with the mfa_token of the first."""
        form = await read_form(request)
        if form is None:
            return unreadable()
        nonce = form_nonce(request, NONCE_TTL) or ""
        try:
            check_origin(request, s)
            check_csrf(request, s, engine.macs.mac("login-form", nonce) if nonce else None,
                       sent=form.get("form_token", ""))
        except CsrfError as exc:
            exc.reason = f"login form (second step): {exc.reason}"
            log_refusal(exc)
            return login_form(request, "This form expired or came from another site. "
                              "Please sign in again.", 403)
        token = form.get("mfa_token", "")
        try:
            value, rec, user = await engine.sessions.login_mfa(
                token, form.get("code", ""), ip=client_ip(request, s),
                user_agent=request.headers.get("user-agent", ""),
                replacing=get_cookie(request, s.session_cookie))
        except InvalidCode as exc:
            log_refusal(exc)
            return render("login_mfa.html", 401, mfa_token=token,
                          passkey=form.get("passkey") == "1", error="That code is not right.",
                          next=next_of(form.get("next")),
                          form_token=engine.macs.mac("login-form", nonce))
        except Throttled as exc:
            log_refusal(exc)
            return render("login_mfa.html", 429, mfa_token=token,
                          passkey=form.get("passkey") == "1", next=next_of(
                form.get("next")), form_token=engine.macs.mac("login-form", nonce),
                error=f"Too many attempts. Try again in {exc.retry_after} seconds.")
        except AuthGateError as exc:
            log_refusal(exc)
            return login_form(request, "That sign-in expired. Please sign in again.", 401)
        return signed_in(form, value, rec, user.id)

    async def current(request: Request) -> Principal | None:
        try:
            return await authenticate(engine, request, "session", csrf=False)
        except NotAuthenticated:
            return None

    def to_login(request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    async def account(request: Request) -> Response:
        principal = await current(request)
        if principal is None:
            return to_login(request)
        entries = await engine.sessions.sign_ins(principal)
        stored = await engine.audit.list_events(user_id=principal.user.id, limit=20)
        events = [{"type": ev.type, "at": iso(ev.at), "ip": ev.ip,
                   "what": EVENT_WORDS.get(ev.type, ev.type)} for ev in reversed(stored)]
        return render("account.html", user=principal.user, principal=principal,
                      events=events, **await account_context(engine, principal, events),
                      csrf=principal.csrf_token, notice=request.query_params.get("done"),
                      **api_key_context(principal),
                      entries=[{"id": e.id, "kind": e.kind, "current": e.current,
                                "ip": e.ip, "user_agent": e.user_agent, "name": e.name,
                                "created_at": iso(e.created_at),
                                "last_seen_at": iso(e.last_seen_at)} for e in entries])

    async def account_action(request: Request) -> Response:
        principal = await current(request)
        if principal is None:
            return to_login(request)
        form = await read_form(request)
        if form is None:
            return unreadable()
        try:
            check_csrf(request, s, principal.csrf_token, sent=form.get("csrf_token", ""))
        except CsrfError as exc:
            exc.reason = f"account form: {exc.reason}"
            log_refusal(exc)
            return render("message.html", 403, title="Request refused",
                          message="That request came from another site or an old page.")
        action = request.path_params["action"]
        if action in MFA_ACTIONS:
            return await mfa_action(engine, request, principal, action, form, render)
        if action in API_KEY_ACTIONS:
            return await api_key_action(engine, request, principal, form, render)
        if action in PASSKEY_ACTIONS:
            return await passkey_action(engine, request, principal, action, form, render)
        if action == "logout":
            await engine.sessions.logout(principal)
            return _logged_out(s)
        if action == "logout-all":
            await engine.sessions.logout_everywhere(principal.user)
            return _logged_out(s)
        if action == "revoke":
            with contextlib.suppress(NotFound):
                await engine.sessions.revoke_sign_in(principal, form.get("id", ""))
            if form.get("id") == (principal.session.id if principal.session else None):
                return _logged_out(s)
            return RedirectResponse("/account?done=revoked", status_code=303)
        return render("message.html", 404, title="Not found", message="No such action.")

    def _logged_out(settings: Any) -> Response:
        response = RedirectResponse("/login", status_code=303)
        clear_session_cookie(response, settings)
        return response

    async def stylesheet(request: Request) -> Response:
        from importlib.resources import files

        css = files("authgate").joinpath("static/authgate.css").read_bytes()
        return Response(css, media_type="text/css",
                        headers={"Cache-Control": "public, max-age=3600"})

    async def script(request: Request) -> Response:
        from importlib.resources import files

        js = files("authgate").joinpath("static/passkeys.js").read_bytes()
        return Response(js, media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=3600",
                                 "X-Content-Type-Options": "nosniff"})

    from authgate.web.account_pages import account_pages

    return [
        *account_pages(engine, render, current),
        Route("/login", login_page, methods=["GET", "POST"], name="login"),
        Route("/login/mfa", login_mfa_page, methods=["POST"]),
        Route("/account", account, methods=["GET"]),
        Route("/account/{action}", account_action, methods=["POST"]),
        Route("/static/authgate.css", stylesheet, methods=["GET"]),
        Route("/static/passkeys.js", script, methods=["GET"]),
    ]
