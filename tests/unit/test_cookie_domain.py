"""COOKIE_DOMAIN (single sign-on across subdomains): validated at start-up, the session
cookie's name and Domain, the pages' CSP; the default stays as it was."""

from __future__ import annotations

import os
from typing import Any

import pytest
from starlette.responses import Response

from authgate.errors import ConfigError
from authgate.models import SessionRecord
from authgate.settings import Settings, load_settings
from authgate.web.http import clear_session_cookie, set_session_cookie
from authgate.web.pages import PAGE_HEADERS, sso_page_headers


@pytest.fixture(autouse=True)
def _no_authgate_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AUTHGATE_"):
            monkeypatch.delenv(name)


def sso(**extra: Any) -> Settings:
    return load_settings(**{"public_url": "https://auth.example.com",
                            "cookie_domain": "example.com", **extra})


def set_cookie_header(settings: Settings, remember: bool = False) -> str:
    response = Response()
    rec = SessionRecord(id="i", token_hash="h", user_id="u", csrf_token="c", created_at=0.0,
                        last_seen_at=0.0, expires_at=3600.0, idle_ttl=1800, remember=remember)
    set_session_cookie(response, settings, "secret", rec)
    return response.headers["set-cookie"]


def test_the_cookie_becomes_secure_prefixed_with_a_domain() -> None:
    s = sso()
    assert s.cookies.domain == "example.com"
    assert s.cookies.session == s.session_cookie == "__Secure-authgate"
    assert set_cookie_header(s) == ("__Secure-authgate=secret; Path=/; Domain=example.com; "
                                    "Secure; HttpOnly; SameSite=Lax")
    response = Response()
    clear_session_cookie(response, s)  # cleared with the same Domain, or the browser keeps it
    assert response.headers["set-cookie"].startswith(
        "__Secure-authgate=; Path=/; Domain=example.com; Max-Age=0;")
    # the other cookies stay on the sign-in host
    assert (s.access_cookie, s.device_cookie) == ("__Host-authgate-at", "__Host-authgate-device")


def test_plain_http_development_drops_the_prefix_as_before() -> None:
    s = sso(public_url="http://auth.example.localhost:8000", cookie_domain="example.localhost",
            cookie_secure=False)
    assert s.cookies.session == "authgate"
    assert set_cookie_header(s) == ("authgate=secret; Path=/; Domain=example.localhost; "
                                    "HttpOnly; SameSite=Lax")


def test_without_it_nothing_changes() -> None:
    s = load_settings(public_url="https://auth.example.com")
    assert s.cookies.domain is None and s.cookies.session == "__Host-authgate"
    assert set_cookie_header(s) == "__Host-authgate=secret; Path=/; Secure; HttpOnly; SameSite=Lax"
    assert "Domain" not in set_cookie_header(s, remember=True)


@pytest.mark.parametrize(("value", "why"), [
    ("https://example.com", "is a URL"), ("example.com:443", "has a port"),
    (".example.com", "not a domain name"), ("example.com/", "not a domain name"),
    ("localhost", "at least two labels"), ("com", "at least two labels"),
    ("10.0.0.1", "an address"), ("exa mple.com", "not a domain name"),
    ("-x.example.com", "not a domain name"), ("example.com.", "not a domain name"),
])
def test_a_bad_domain_is_refused_in_one_line(value: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as info:
        sso(cookie_domain=value)
    assert "AUTHGATE_COOKIE_DOMAIN" in str(info.value) and "\n" not in str(info.value)


def test_the_domain_is_normalised() -> None:
    assert sso(cookie_domain=" Example.COM ").cookies.domain == "example.com"
    assert load_settings(cookie_domain="").cookies.domain is None


@pytest.mark.parametrize("public_url", ["https://auth.example.net", "https://evil-example.com",
                                        "https://example.com.evil.net"])
def test_public_url_must_be_on_the_domain(public_url: str) -> None:
    with pytest.raises(ConfigError, match="does not cover PUBLIC_URL's host"):
        sso(public_url=public_url)


def test_public_url_may_be_the_domain_itself() -> None:
    assert sso(public_url="https://example.com").cookies.domain == "example.com"


def test_allowed_origins_are_siblings_over_https() -> None:
    s = sso(allowed_origins="https://app.example.com,https://admin.example.com:8443")
    assert s.server.allowed_origins == ("https://app.example.com", "https://admin.example.com:8443")
    with pytest.raises(ConfigError, match="not on COOKIE_DOMAIN"):
        sso(allowed_origins="https://app.example.com,https://evil.net")
    with pytest.raises(ConfigError, match="not https"):
        sso(allowed_origins="http://app.example.com")
    assert sso(allowed_origins="http://app.example.com", cookie_secure=False)


def test_the_environment_spelling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_COOKIE_DOMAIN", "example.com")
    monkeypatch.setenv("AUTHGATE_PUBLIC_URL", "https://auth.example.com")
    assert load_settings().cookies.session == "__Secure-authgate"


def test_the_login_form_may_lead_to_the_domain() -> None:
    """Chromium checks the redirect after the form's POST against form-action."""
    csp = sso_page_headers("example.com", True)["Content-Security-Policy"]
    assert ("form-action 'self' https://example.com:* https://*.example.com:*;" in csp)
    assert "http://" not in csp
    assert "http://*.example.com:*" in sso_page_headers("example.com", False)[
        "Content-Security-Policy"]
    assert "form-action 'self';" in PAGE_HEADERS["Content-Security-Policy"]
