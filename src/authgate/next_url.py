"""Where a browser may be sent after sign-in: the one check behind ``/login?next=`` and the
forward-auth redirect. Pure functions of strings (no framework, no engine).

Without ``COOKIE_DOMAIN`` only a local path is accepted (:func:`local_path`). With it, an
absolute URL on the sign-in domain is accepted too (:func:`domain_url`): the host is
``PUBLIC_URL``'s host, ``COOKIE_DOMAIN`` itself or a subdomain of it, compared label by label
(``evil-example.com`` and ``example.com.evil.net`` are not under ``example.com``). The URL is
refused rather than repaired whenever a browser could read it differently from this parser:
backslashes, control characters, spaces, non-ASCII, userinfo, percent signs in the host, a
trailing dot. ``https`` only, unless the cookies are not ``Secure`` (plain-HTTP development).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

#: The longest ``next`` kept; a longer one falls back to the landing page.
MAX_LENGTH = 2048

# host[:port] and nothing else: lower-case LDH labels (no userinfo, no IPv6 literal, no %).
_NETLOC = re.compile(r"^(?P<host>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
                     r"(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*)(?::(?P<port>[0-9]{1,5}))?$")


def _plain(value: str) -> bool:
    """Printable ASCII without spaces or backslashes: what every parser reads alike."""
    return (value.isascii() and "\\" not in value
            and not any(ord(c) <= 0x20 or ord(c) == 0x7F for c in value))


def local_path(value: str | None) -> str | None:
    """``value`` when it is a path on this host (``/...``, not ``//`` or ``/\\``), else None."""
    if not value or len(value) > MAX_LENGTH or not value.startswith("/"):
        return None
    if value.startswith(("//", "/\\")) or "\\" in value:
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value


def host_under(host: str, domain: str) -> bool:
    """``host`` is ``domain`` or a subdomain of it (whole labels; both lower-case)."""
    return host == domain or host.endswith("." + domain)


def domain_url(value: str | None, *, public_host: str, cookie_domain: str,
               secure: bool) -> str | None:
    """``value`` when it is an absolute ``https`` (or, with ``secure`` false, ``http``) URL
    whose host is ``public_host``, ``cookie_domain`` or under it; else None."""
    if not value or len(value) > MAX_LENGTH or not _plain(value):
        return None
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in (("https",) if secure else ("https", "http")):
        return None
    parts = urlsplit(value)
    if parts.netloc != rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]:
        return None  # the parser saw the authority end elsewhere than a browser would
    found = _NETLOC.match(parts.netloc.lower())
    if found is None:
        return None
    port = found.group("port")
    if port is not None and not 0 < int(port) < 65536:
        return None
    host = found.group("host")
    if host != public_host.lower() and not host_under(host, cookie_domain.lower()):
        return None
    return value


def safe_target(value: str | None, *, public_host: str, cookie_domain: str | None,
                secure: bool, default: str = "/account") -> str:
    """Where to go after sign-in: a local path, or (with ``cookie_domain``) a URL on the
    sign-in domain; anything else becomes ``default`` (never an open redirect)."""
    found = local_path(value)
    if found is None and cookie_domain is not None:
        found = domain_url(value, public_host=public_host, cookie_domain=cookie_domain,
                           secure=secure)
    return default if found is None else found
