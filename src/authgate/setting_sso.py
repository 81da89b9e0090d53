"""``COOKIE_DOMAIN``: one sign-in for every host under a domain (mixed into
:class:`authgate.settings.Settings`; its group view is
:class:`authgate.setting_groups.CookieSettings`).

Set, the session cookie becomes ``__Secure-authgate`` with ``Domain=<COOKIE_DOMAIN>`` (the
``__Host-`` prefix forbids a domain), ``next=`` may name a URL on that domain, and
``/auth/verify`` can send a browser to ``{PUBLIC_URL}/login?next=<the page>``. Checked at
start-up: the value is a bare domain name of at least two labels, ``PUBLIC_URL``'s host is
that domain or under it, and every ``ALLOWED_ORIGINS`` entry is on it too (``https`` unless
``COOKIE_SECURE=false``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, field_validator, model_validator

from authgate.next_url import host_under

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})+$")


class SsoFields(BaseModel):
    # The parent domain of the apps that share one sign-in (e.g. example.com); unset: the
    # session cookie is __Host-authgate, for PUBLIC_URL's host only.
    cookie_domain: str | None = None

    @field_validator("cookie_domain", mode="before")
    @classmethod
    def _cookie_domain(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            return value
        domain = value.strip().lower()
        if "://" in domain:
            raise ValueError(f"{value!r} is a URL: give the domain name alone, such as "
                             "example.com")
        if domain.replace(".", "").isdigit() or ":" in domain:
            raise ValueError(f"{value!r} is an address or has a port: give a domain name such "
                             "as example.com")
        if not _DOMAIN.match(domain) or len(domain) > 253:
            raise ValueError(f"{value!r} is not a domain name such as example.com (no scheme, "
                             "port, path or leading dot; at least two labels: browsers refuse "
                             "Domain=localhost or Domain=com)")
        return domain

    @model_validator(mode="after")
    def _cookie_domain_fits(self) -> Any:
        domain = self.cookie_domain
        if domain is None:
            return self
        public = urlsplit(str(getattr(self, "public_url", "")))
        host = (public.hostname or "").lower()
        if not host_under(host, domain):
            raise ValueError(f"COOKIE_DOMAIN {domain} does not cover PUBLIC_URL's host {host!r}"
                             f": PUBLIC_URL must be on {domain} or a subdomain of it")
        secure = bool(getattr(self, "cookie_secure", True))
        for origin in getattr(self, "allowed_origins", ()):
            parts = urlsplit(origin)
            if not host_under((parts.hostname or "").lower(), domain):
                raise ValueError(f"ALLOWED_ORIGINS entry {origin} is not on COOKIE_DOMAIN "
                                 f"{domain}")
            if secure and parts.scheme != "https":
                raise ValueError(f"ALLOWED_ORIGINS entry {origin} is not https (the Secure "
                                 "cookie never reaches it; COOKIE_SECURE=false for plain-HTTP "
                                 "development)")
        return self
