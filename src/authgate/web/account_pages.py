"""The account lifecycle's pages (contract §7): ``/register``, ``/forgot-password``,
``/reset-password``, ``/verify-email``, and the address and deletion forms of ``/account``.
Server-rendered, no JavaScript, the same strict CSP as ``/login``.

A link from a mail (``/reset-password?token=…``, ``/verify-email?token=…``) is answered,
before anything else loads, by a redirect to the same path without the query: the token
moves into a short-lived HttpOnly cookie, so it leaves the address bar, the history and any
``Referer`` (``Referrer-Policy: no-referrer`` as well). Nothing is used up by a GET (mail
scanners open links): the token is spent by the form's POST.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from authgate.engine import Engine
from authgate.errors import AuthGateError, BadRequest, CsrfError, InvalidMailToken, Throttled
from authgate.models import Principal
from authgate.web.errors import log_refusal
from authgate.web.http import (
    check_csrf,
    check_origin,
    clear_cookie,
    clear_session_cookie,
    client_ip,
    get_cookie,
    set_cookie,
)
from authgate.web.parsing import read_form

TOKEN_COOKIE_TTL = 900  # the form must be sent within 15 minutes of opening the link
NO_REFERRER = {"Referrer-Policy": "no-referrer"}

Render = Callable[..., HTMLResponse]
Current = Callable[[Request], Awaitable[Principal | None]]


def account_pages(engine: Engine, render: Render, current: Current) -> list[BaseRoute]:
    s = engine.settings
    account = engine.account
    cookies = {"reset": f"{s.cookie_prefix}authgate-reset",
               "verify": f"{s.cookie_prefix}authgate-verify"}

    async def form_of(request: Request) -> dict[str, str] | None:
        try:
            return await read_form(request)
        except BadRequest:
            return None

    def refused(exc: AuthGateError, where: str) -> None:
        exc.reason = f"{where}: {exc.reason or exc.code}"
        log_refusal(exc)

    def message(title: str, text: str, status: int = 200, *,
                headers: dict[str, str] | None = None) -> HTMLResponse:
        response = render("message.html", status, title=title, message=text,
                          back=("/login", "Sign in"))
        response.headers.update(headers or {})
        return response

    def same_site(request: Request) -> bool:
        try:
            check_origin(request, s)
        except CsrfError as exc:
            refused(exc, request.url.path)
            return False
        return True

    cross_site = ("Request refused", "That form came from another site.", 403)

    # -- /register --------------------------------------------------------------------------

    async def register_page(request: Request) -> Response:
        if not s.open_registration:
            return message("Not found", "Registration is closed.", 404)
        if request.method == "GET":
            return render("register.html", username="", email="", error=None)
        form = await form_of(request)
        if form is None or not same_site(request):
            return message(*cross_site)
        username, email = form.get("username", ""), form.get("email", "").strip()
        try:
            await account.register(username, form.get("password", ""), email or None,
                                   ip=client_ip(request, s))
        except AuthGateError as exc:
            refused(exc, "register form")
            status = exc.status if exc.status != 401 else 400
            return render("register.html", status, username=username, email=email,
                          error=exc.detail)
        return RedirectResponse("/login?done=registered" + ("-mail" if email else ""),
                                status_code=303, headers={"Cache-Control": "no-store"})

    # -- /forgot-password -----------------------------------------------------------------

    async def forgot_page(request: Request) -> Response:
        if request.method == "GET":
            return render("forgot.html", error=None, sent=False, email="")
        form = await form_of(request)
        if form is None or not same_site(request):
            return message(*cross_site)
        email = form.get("email", "").strip()
        try:
            await account.forgot(email, client_ip(request, s))
        except Throttled as exc:
            refused(exc, "forgot form")
            return render("forgot.html", 429, sent=False, email=email,
                          error=f"Too many requests. Try again in {exc.retry_after} seconds.")
        except AuthGateError as exc:
            refused(exc, "forgot form")
            return render("forgot.html", exc.status, sent=False, email=email, error=exc.detail)
        return render("forgot.html", sent=True, email="", error=None)

    # -- the links from the mails -----------------------------------------------------------

    def take_token(request: Request, kind: str) -> Response | None:
        """``?token=`` in the URL: a redirect that moves it into a cookie; else None."""
        token = request.query_params.get("token")
        if token is None:
            return None
        response = RedirectResponse(request.url.path, status_code=303,
                                    headers={"Cache-Control": "no-store", **NO_REFERRER})
        if 0 < len(token) <= 128 and token.isascii() and token.replace("-", "").replace(
                "_", "").isalnum():
            set_cookie(response, cookies[kind], token, secure=s.cookie_secure,
                       max_age=TOKEN_COOKIE_TTL)
        return response

    def with_token(response: HTMLResponse) -> HTMLResponse:
        response.headers.update(NO_REFERRER)
        return response

    def spent(response: Response, kind: str) -> Response:
        clear_cookie(response, cookies[kind], secure=s.cookie_secure)
        return response

    invalid_link = ("Link not valid", "This link is invalid, used or expired. "
                    "Ask for a new one.", 400)

    async def reset_page(request: Request) -> Response:
        moved = take_token(request, "reset")
        if moved is not None:
            return moved
        token = get_cookie(request, cookies["reset"])
        if request.method == "GET":
            if not token:
                return message(*invalid_link, headers=NO_REFERRER)
            return with_token(render("reset.html", error=None))
        form = await form_of(request)
        if form is None or not same_site(request):
            return message(*cross_site)
        try:
            await account.reset(token or "", form.get("new_password", ""))
        except InvalidMailToken as exc:
            refused(exc, "reset form")
            return spent(message(*invalid_link, headers=NO_REFERRER), "reset")
        except AuthGateError as exc:
            refused(exc, "reset form")
            return with_token(render("reset.html", exc.status, error=exc.detail))
        return spent(RedirectResponse("/login?done=reset", status_code=303,
                                      headers={"Cache-Control": "no-store", **NO_REFERRER}),
                     "reset")

    async def verify_page(request: Request) -> Response:
        moved = take_token(request, "verify")
        if moved is not None:
            return moved
        token = get_cookie(request, cookies["verify"])
        if request.method == "GET":
            if not token:
                return message(*invalid_link, headers=NO_REFERRER)
            return with_token(render("verify.html"))
        form = await form_of(request)
        if form is None or not same_site(request):
            return message(*cross_site)
        try:
            user = await account.verify(token or "")
        except AuthGateError as exc:
            refused(exc, "verify form")
            return spent(message(*invalid_link, headers=NO_REFERRER), "verify")
        return spent(message("Address confirmed", f"{user.email} is your verified address.",
                             headers=NO_REFERRER), "verify")

    # -- /account: the address and leaving ----------------------------------------------------

    async def account_mail_action(request: Request) -> Response:
        principal = await current(request)
        if principal is None:
            return RedirectResponse("/login?next=%2Faccount", status_code=303)
        form = await form_of(request)
        if form is None:
            return message(*cross_site)
        try:
            check_csrf(request, s, principal.csrf_token, sent=form.get("csrf_token", ""))
        except CsrfError as exc:
            refused(exc, "account form")
            return message("Request refused",
                           "That request came from another site or an old page.", 403)
        action = request.url.path.rsplit("/", 1)[1]
        ip = client_ip(request, s)
        try:
            if action == "email":
                await account.request_change(principal, form.get("email", "").strip(),
                                             form.get("current_password", ""), ip)
                return RedirectResponse("/account?done=email-sent", status_code=303)
            if action == "verification":
                await account.send_verification(principal)
                return RedirectResponse("/account?done=verification-sent", status_code=303)
            await account.delete(principal, form.get("current_password", ""), ip)
        except AuthGateError as exc:
            refused(exc, "account form")
            return render("message.html", exc.status if exc.status != 401 else 400,
                          title="Not done", message=exc.detail, back=("/account", "Back"))
        response = message("Account deleted", "Your account and everything it held are gone.")
        clear_session_cookie(response, s)
        return response

    pages: list[tuple[str, Any, list[str]]] = [
        ("/register", register_page, ["GET", "POST"]),
        ("/forgot-password", forgot_page, ["GET", "POST"]),
        ("/reset-password", reset_page, ["GET", "POST"]),
        ("/verify-email", verify_page, ["GET", "POST"]),
    ]
    routes: list[BaseRoute] = [Route(path, fn, methods=methods) for path, fn, methods in pages]
    routes += [Route(f"/account/{action}", account_mail_action, methods=["POST"])
               for action in ("email", "verification", "delete")]
    return routes
