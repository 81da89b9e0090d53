"""The one mapping from an exception to the contract's JSON error response.

Every adapter answers an error through :func:`to_response`: the ``/auth/*`` routes, the
server's fast path, its exception handlers and its error boundary, the Starlette
middleware and the FastAPI dependencies. What an error looks like over HTTP (status, body,
``WWW-Authenticate``, ``Retry-After``, ``no-store``) is decided here and nowhere else.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from starlette.exceptions import HTTPException

from authgate.errors import (
    AuthGateError,
    BadRequest,
    InsufficientScope,
    InsufficientUserAuthentication,
    InvalidCredentials,
    InvalidGrant,
    InvalidRequest,
    InvalidToken,
    MfaRequired,
    PayloadTooLarge,
    Throttled,
    UnsupportedMediaType,
)
from authgate.web.http import NO_STORE, JSONResponse

log = logging.getLogger("authgate")
refusals = logging.getLogger("authgate.refusals")

#: The OAuth endpoints: their errors take RFC 6749 §5.2's form.
OAUTH_PATHS = ("/auth/token", "/auth/revoke")


class HeadersTooLarge(AuthGateError):
    """Request headers over 16 KiB in all (the hardening layer's 431)."""

    code = "headers_too_large"
    status = 431

    def __init__(self) -> None:
        super().__init__("the request headers are larger than 16 KiB")


class InvalidBody(BadRequest):
    """The request is invalid."""

    status = 422


class _OAuthTooLarge(InvalidRequest):
    """A body or headers too large at an OAuth endpoint: RFC 6749 §5.2's code, its status."""

    def __init__(self, exc: AuthGateError) -> None:
        super().__init__(exc.detail, reason=exc.reason)
        self.status = exc.status


#: The ``acr_values`` a step-up to a second factor asks for (and the ``acr`` it gets).
MFA_ACR = "mfa"

_TOO_LARGE = (PayloadTooLarge, HeadersTooLarge)
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def to_response(exc: BaseException, *, oauth: bool = False, token_sent: bool = False,
                challenge: str | None = None, where: str = "") -> JSONResponse:
    """The contract's JSON error for ``exc``.

    :param oauth: answer in RFC 6749 §5.2's form (``/auth/token``, ``/auth/revoke``).
    :param token_sent: the request carried a bearer token (a 401 then says
        ``error="invalid_token"``).
    :param challenge: the ``WWW-Authenticate`` of a 401 instead of the bearer one (a
        session-only route's cookie challenge).
    :param where: ``"METHOD /path"`` for the log line of an unexpected exception.

    An :class:`AuthGateError` refusal is logged with its reason (the client is not told
    it); Starlette's ``HTTPException`` (404, 405) keeps its status and headers; anything
    else is a logged 500 ``internal`` without a trace of it in the response.
    """
    if isinstance(exc, AuthGateError):
        return _error(exc, oauth, token_sent, challenge)
    if isinstance(exc, HTTPException):
        detail = str(exc.detail)
        body = ({"error": "invalid_request", "error_description": detail} if oauth
                else {"error": _HTTP_CODES.get(exc.status_code, "http_error"), "detail": detail})
        return JSONResponse(body, status_code=exc.status_code,
                            headers={**NO_STORE, **(exc.headers or {})})
    log.error("unhandled error on %s: %s", where or "a request", type(exc).__name__)
    return JSONResponse({"error": "internal", "detail": "internal error"}, status_code=500,
                        headers=NO_STORE)


def _error(exc: AuthGateError, oauth: bool, token_sent: bool,
           challenge: str | None) -> JSONResponse:
    if oauth:
        if isinstance(exc, InvalidCredentials):
            exc = InvalidGrant("invalid username or password")
        elif isinstance(exc, UnsupportedMediaType):  # §5.2: a malformed request is a 400
            exc = InvalidRequest(exc.detail)
        elif isinstance(exc, _TOO_LARGE):  # ... but a 413 / 431 keeps its status
            exc = _OAuthTooLarge(exc)
    log_refusal(exc)
    body: dict[str, Any] = ({"error": exc.code, "error_description": exc.detail} if oauth
            else {"error": exc.code, "detail": exc.detail})
    headers = dict(NO_STORE)
    status = exc.status
    if isinstance(exc, MfaRequired):
        body.update(mfa_token=exc.mfa_token)
        if oauth:  # the client is not unauthenticated: it must use the mfa grant
            status = 403
        else:
            body["methods"] = list(exc.methods)
    if isinstance(exc, InsufficientUserAuthentication):  # RFC 9470 §3
        challenge = (f'Bearer error="insufficient_user_authentication", '
                     f'error_description="{exc.detail}"')
        if exc.mfa:
            challenge += f', acr_values="{MFA_ACR}"'
        if exc.max_age is not None:
            challenge += f", max_age={exc.max_age}"
        headers["WWW-Authenticate"] = challenge
    elif status == 401:
        headers["WWW-Authenticate"] = (challenge if challenge is not None
                                       else 'Bearer error="invalid_token"'
                                       if token_sent or isinstance(exc, InvalidToken)
                                       else "Bearer")
    elif isinstance(exc, InsufficientScope):
        # Only RFC 6750 scope-tokens go into the header: a requested scope can be anything
        # a client sent (a quote, a control or a non-Latin-1 character would break the
        # header, or the response); the body's detail names them all.
        asked = exc.detail.split(":", 1)[-1].split()
        scope = " ".join(t for t in asked if _SCOPE_TOKEN.fullmatch(t))
        headers["WWW-Authenticate"] = f'Bearer error="insufficient_scope", scope="{scope}"'
    elif isinstance(exc, Throttled):
        headers["Retry-After"] = str(exc.retry_after)
    return JSONResponse(body, status_code=status, headers=headers)


_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def log_refusal(exc: AuthGateError) -> None:
    """One INFO line per refused credential (401/403/429), with the reason when known and
    the request id (from the logging filter); never the credential itself."""
    if exc.quiet:
        return
    if exc.status in (401, 403, 429) and (exc.reason or exc.status != 401):
        # (a 401 without a reason is a request that sent no credential at all: not logged)
        refusals.info("refused %s: %s", exc.code, exc.reason or exc.detail,
                      extra={"code": exc.code, "status": exc.status,
                             "reason": exc.reason or exc.code})


__all__ = ["OAUTH_PATHS", "HeadersTooLarge", "InvalidBody", "log_refusal", "to_response"]
