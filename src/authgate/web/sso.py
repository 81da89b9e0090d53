"""Forward-auth under ``COOKIE_DOMAIN``: sending a browser that is not signed in to
``{PUBLIC_URL}/login?next=<the page it asked for>``.

The page is rebuilt from ``X-Forwarded-Proto``, ``X-Forwarded-Host`` and
``X-Forwarded-Uri`` — believed only from a ``TRUSTED_PROXIES`` peer, each given once — and
must pass the same check as ``next=`` (a URL on the sign-in domain). Only a page
navigation qualifies: a ``GET``/``HEAD`` whose ``Sec-Fetch-Dest`` is ``document`` or
``iframe`` (or, from a browser that sends no fetch metadata, whose ``Accept`` names
``text/html``), without ``X-Requested-With``. Then ``/auth/verify`` answers:

- with ``?redirect=1`` (Traefik ForwardAuth, Caddy ``forward_auth``: they pass any answer
  but a 2xx back to the browser), ``302`` to the login page;
- without it (nginx ``auth_request``, for which anything but 2xx/401/403 is an error), the
  usual 401 plus ``X-Auth-Login: <the login URL>`` for ``error_page 401`` to redirect to.

The same goes for a step-up that fails (``?mfa=1``, ``?max_age=N``: RFC 9470's 401), with
``&reauth=1`` on the login URL. Everything else keeps the plain 401, and nothing here runs
without ``COOKIE_DOMAIN``.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from authgate.errors import InsufficientUserAuthentication, InvalidToken, NotAuthenticated
from authgate.next_url import domain_url
from authgate.settings import Settings
from authgate.web.errors import to_response
from authgate.web.http import NO_STORE, from_trusted_proxy, raw_header

LOGIN_HEADER = "X-Auth-Login"
_PAGE_DESTS = frozenset({"document", "iframe"})
_HOST = re.compile(r"^[A-Za-z0-9.-]+(?::[0-9]{1,5})?$")  # host[:port], nothing else


def _single(request: Request, name: bytes, *, listed: bool = False) -> str | None:
    """A header given exactly once; unless ``listed``, not a list either (a proxy
    chain's ``a, b`` is not one host)."""
    values = [v for k, v in request.scope["headers"] if k == name]
    if len(values) != 1:
        return None
    value = values[0].decode("latin-1").strip()
    return value if value and (listed or "," not in value) else None


def _is_page(request: Request) -> bool:
    methods = {(raw_header(request, h) or "GET").strip().upper()
               for h in (b"x-forwarded-method", b"x-original-method")}
    if not methods <= {"GET", "HEAD"} or raw_header(request, b"x-requested-with"):
        return False
    dest = raw_header(request, b"sec-fetch-dest")
    if dest is not None:
        return dest.strip().lower() in _PAGE_DESTS
    return "text/html" in (raw_header(request, b"accept") or "").lower()


def forwarded_page(request: Request, settings: Settings) -> str | None:
    """The page a trusted proxy asked about, when a browser navigated to it and it is on
    the sign-in domain; else None."""
    domain = settings.cookies.domain
    if domain is None or not from_trusted_proxy(request, settings):
        return None
    proto = _single(request, b"x-forwarded-proto")
    host = _single(request, b"x-forwarded-host")
    uri = _single(request, b"x-forwarded-uri", listed=True)  # a path may hold a comma
    if (proto is None or host is None or uri is None or not _HOST.match(host)
            or not uri.startswith("/") or uri.startswith("//")):
        return None
    if not _is_page(request):
        return None
    return domain_url(f"{proto.lower()}://{host}{uri}",
                      public_host=urlsplit(settings.server.public_url).hostname or "",
                      cookie_domain=domain, secure=settings.cookies.secure)


def login_url(settings: Settings, page: str, reauth: bool = False) -> str:
    return (f"{settings.server.public_url}/login?next={quote(page, safe='')}"
            + ("&reauth=1" if reauth else ""))


def unauthenticated(request: Request, settings: Settings,
                    exc: NotAuthenticated | InsufficientUserAuthentication) -> Response | None:
    """``/auth/verify``'s answer to a page navigation that is not signed in, or whose
    sign-in is not strong or recent enough (step-up: ``&reauth=1``; see the module
    docstring), or None for the plain 401."""
    if isinstance(exc, InvalidToken) or raw_header(request, b"authorization"):
        return None  # an API client's credential was refused: it gets the 401
    page = forwarded_page(request, settings)
    if page is None:
        return None
    target = login_url(settings, page, reauth=isinstance(exc, InsufficientUserAuthentication))
    if request.query_params.get("redirect") == "1":
        return Response(status_code=302, headers={**NO_STORE, "Location": target})
    response = to_response(exc)
    response.headers[LOGIN_HEADER] = target
    return response
