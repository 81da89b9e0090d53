"""HTTP plumbing shared by the router, the pages and the middleware: responses, cookies,
client addresses and CSRF. Thin: no auth decisions are made here (errors are
:mod:`authgate.web.errors`, bodies :mod:`authgate.web.parsing`)."""

from __future__ import annotations

import hmac
import ipaddress
from functools import lru_cache
from typing import Any

import orjson
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from authgate.errors import CsrfError
from authgate.models import SessionRecord
from authgate.settings import Settings

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # RFC 9110 §9.2.1


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


_NO_STORE_JSON = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache"),
                  (b"content-type", b"application/json")]


class PrivateJSON(Response):
    """A 200 ``application/json`` + ``no-store`` response with its header list prebuilt:
    the per-request path skips Starlette's header assembly."""

    def __init__(self, content: Any) -> None:
        self.status_code = 200
        self.background = None
        self.body = orjson.dumps(content)
        self.raw_headers = [*_NO_STORE_JSON, (b"content-length", str(len(self.body)).encode())]


def raw_header(conn: HTTPConnection, name: bytes) -> str | None:
    """The first of one request header straight from the ASGI scope (``name`` lower-case),
    skipping Starlette's ``Headers`` object on the per-request path (``Cookie``: see
    :func:`credential_headers`)."""
    key: bytes
    value: bytes
    for key, value in conn.scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def credential_headers(conn: HTTPConnection) -> tuple[str | None, str | None]:
    """``Authorization`` (the first) and ``Cookie`` (repeated ones joined, as HTTP/2 sends
    them) in one pass over the headers."""
    authorization: str | None = None
    cookie: str | None = None
    for key, value in conn.scope["headers"]:
        if key == b"cookie":
            text = value.decode("latin-1")
            cookie = text if cookie is None else f"{cookie}; {text}"
        elif key == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
    return authorization, cookie


def get_cookie(conn: HTTPConnection, name: str) -> str | None:
    """One cookie's value from the raw header; None when absent or unparseable."""
    return cookie_value(credential_headers(conn)[1], name)


def cookie_value(header: str | None, name: str) -> str | None:
    """One cookie's value from a ``Cookie`` header; None when absent or unparseable."""
    if not header or name not in header:
        return None
    return _cookie_value(header, name)


def _cookie_value(header: str, name: str) -> str | None:
    """The first ``name=value`` pair of a ``Cookie`` header. Not cached: a cache keyed by
    the header would keep every user's raw session secrets in memory (and 64 MB of them)."""
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            value = value.strip()
            return value if value.isascii() and value.isprintable() else None
    return None


def set_cookie(response: Response, name: str, value: str, *, secure: bool,
               max_age: int | None = None, path: str = "/", samesite: str = "lax",
               domain: str | None = None) -> None:
    """Append one ``Set-Cookie``: always HttpOnly with an explicit SameSite; a ``Domain``
    only when given (the session cookie under ``COOKIE_DOMAIN``)."""
    parts = [f"{name}={value}", f"Path={path}"]
    if domain is not None:
        parts.append(f"Domain={domain}")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
        if max_age == 0:
            parts.append("Expires=Thu, 01 Jan 1970 00:00:00 GMT")
    if secure:
        parts.append("Secure")
    parts += ["HttpOnly", f"SameSite={samesite.capitalize()}"]
    response.raw_headers.append((b"set-cookie", "; ".join(parts).encode("latin-1")))


def set_session_cookie(response: Response, settings: Settings, value: str,
                       rec: SessionRecord) -> None:
    """The session cookie: a browser-session cookie, or persistent for remember-me."""
    set_cookie(response, settings.session_cookie, value, secure=settings.cookie_secure,
               max_age=int(rec.expires_at - rec.created_at) if rec.remember else None,
               domain=settings.cookie_domain)


def clear_cookie(response: Response, name: str, *, secure: bool, path: str = "/",
                 samesite: str = "lax", domain: str | None = None) -> None:
    set_cookie(response, name, "", secure=secure, max_age=0, path=path, samesite=samesite,
               domain=domain)


def clear_session_cookie(response: Response, settings: Settings) -> None:
    """Clear the session cookie (with the ``Domain`` it was set with, or it stays)."""
    clear_cookie(response, settings.session_cookie, secure=settings.cookie_secure,
                 domain=settings.cookie_domain)


@lru_cache(maxsize=16)
def _networks(proxies: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network,
                                                  ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _trusted(host: str, proxies: tuple[str, ...]) -> bool:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(addr in net for net in _networks(proxies))


def from_trusted_proxy(conn: HTTPConnection, settings: Settings) -> bool:
    """Whether the peer is one of ``TRUSTED_PROXIES`` (whose forwarded headers count)."""
    proxies = settings.server.trusted_proxies
    return bool(proxies) and conn.client is not None and _trusted(conn.client.host, proxies)


def client_ip(request: HTTPConnection, settings: Settings) -> str:
    """The peer address; ``X-Forwarded-For`` only when the peer is a trusted proxy, taking
    the right-most address that is not itself a trusted proxy. Several header lines are one
    list, in order (RFC 9110 §5.3): a proxy that appends a line of its own (HAProxy) is
    read, not the line the client wrote."""
    peer = request.client.host if request.client else ""
    proxies = tuple(settings.trusted_proxies)
    if not proxies or not _trusted(peer, proxies):
        return peer
    forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
    for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
        if not _trusted(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return peer


@lru_cache(maxsize=8)
def _origins(public_origin: str, extra: tuple[str, ...]) -> frozenset[str]:
    origins = {public_origin, *extra}
    scheme, _, hostport = public_origin.partition("://")
    host, _, port = hostport.rpartition(":") if hostport.count(":") == 1 else (hostport, "", "")
    if host in ("127.0.0.1", "localhost", "[::1]"):  # one machine, three spellings
        suffix = f":{port}" if port else ""
        origins |= {f"{scheme}://{h}{suffix}" for h in ("127.0.0.1", "localhost", "[::1]")}
    return frozenset(origins)


def allowed_origins(settings: Settings) -> frozenset[str]:
    """``PUBLIC_URL``'s origin and ``ALLOWED_ORIGINS`` (a loopback ``PUBLIC_URL`` also
    accepts the other loopback spellings of the same port)."""
    return _origins(settings.public_origin, tuple(settings.allowed_origins))


def check_origin(request: HTTPConnection, settings: Settings) -> None:
    """Refuse a cross-site request: ``Sec-Fetch-Site: cross-site`` or a foreign
    ``Origin`` (exact match, ``null`` refused)."""
    if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
        raise CsrfError(reason="Sec-Fetch-Site: cross-site")
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") not in allowed_origins(settings):
        raise CsrfError(reason="wrong Origin")


def check_csrf(request: Request, settings: Settings, expected: str | None,
               sent: str | None = None) -> None:
    """The contract's CSRF rule for unsafe methods authenticated by a cookie: a same-site
    request carrying ``expected`` in ``X-CSRF-Token`` (or, for an HTML form, ``sent``)."""
    check_origin(request, settings)
    if sent is None:
        sent = request.headers.get("x-csrf-token", "")
    if not sent:
        raise CsrfError(reason="missing CSRF token")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfError(reason="CSRF token mismatch")
