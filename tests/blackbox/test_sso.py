"""COOKIE_DOMAIN over HTTP: the domain cookie, and /auth/verify sending a browser's page
navigation to the sign-in page — only from a trusted proxy, only for a page on the sign-in
domain. Without COOKIE_DOMAIN, forward-auth answers exactly as before."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import Server
from tests.helpers import AuthClient, parse_set_cookie

DOMAIN = "example.com"
PUBLIC = "https://auth.example.com"
PAGE = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example.com",
        "X-Forwarded-Uri": "/reports?year=2026&q=a%26b", "X-Original-Method": "GET",
        "Accept": "text/html,application/xhtml+xml", "Sec-Fetch-Dest": "document"}
LOGIN = f"{PUBLIC}/login?next=" + quote("https://app.example.com/reports?year=2026&q=a%26b",
                                        safe="")


@pytest.fixture(scope="module")
def sso(module_server_factory: Callable[..., Server]) -> Server:
    return module_server_factory(public_url=PUBLIC, cookie_domain=DOMAIN,
                                 trusted_proxies="127.0.0.1",
                                 allowed_origins="https://app.example.com")


@pytest.fixture(scope="module")
def plain(module_server_factory: Callable[..., Server]) -> Server:
    return module_server_factory(public_url=PUBLIC, trusted_proxies="127.0.0.1")


def verify(srv: Server, query: str = "", **headers: Any) -> httpx.Response:
    return httpx.get(f"{srv.url}/auth/verify{query}", headers=headers, follow_redirects=False)


def client(srv: Server) -> AuthClient:
    c = srv.client()
    c.session_cookie = "__Secure-authgate"
    return c


def test_the_session_cookie_has_the_domain_and_logout_clears_it(sso: Server) -> None:
    name, pw = sso.new_user("sso")
    c = client(sso)
    r = c.login(name, pw)
    assert r.status_code == 200
    cookie, value, attrs = next(parse_set_cookie(h) for h in r.headers.get_list("set-cookie")
                                if h.startswith("__Secure-authgate="))
    assert cookie == "__Secure-authgate" and len(value) >= 43
    assert attrs["domain"] == DOMAIN and "secure" in attrs and "httponly" in attrs
    assert attrs["samesite"].lower() == "lax" and attrs["path"] == "/"
    assert verify(sso, **PAGE, Cookie=f"__Secure-authgate={value}").status_code == 200
    assert c.get("/auth/me").json()["username"] == name

    # a sibling in ALLOWED_ORIGINS may write with the CSRF token; a foreign origin may not
    assert c.unsafe("POST", "/auth/logout", headers={"Origin": "https://evil.net"}
                    ).status_code == 403
    out = c.unsafe("POST", "/auth/logout", headers={"Origin": "https://app.example.com"})
    assert out.status_code == 204
    cleared = [h for h in out.headers.get_list("set-cookie") if h.startswith("__Secure-authgate=")]
    assert len(cleared) == 1 and f"Domain={DOMAIN}" in cleared[0] and "Max-Age=0" in cleared[0]
    assert verify(sso, Cookie=f"__Secure-authgate={value}").status_code == 401


def test_a_page_navigation_gets_the_login_url(sso: Server) -> None:
    plain_401 = verify(sso)
    nginx = verify(sso, **PAGE)                      # nginx: the 401, and where to send it
    assert nginx.status_code == 401 and nginx.headers["x-auth-login"] == LOGIN
    assert nginx.json() == plain_401.json()
    assert nginx.headers["www-authenticate"] == plain_401.headers["www-authenticate"]
    assert "x-auth-login" not in plain_401.headers

    redirect = verify(sso, "?redirect=1", **PAGE)    # Traefik, Caddy: the redirect itself
    assert redirect.status_code == 302 and redirect.headers["location"] == LOGIN
    assert redirect.headers["cache-control"] == "no-store"

    old_browser = {k: v for k, v in PAGE.items() if k != "Sec-Fetch-Dest"}  # Accept decides
    assert verify(sso, "?redirect=1", **old_browser).status_code == 302
    traefik = {**PAGE, "X-Forwarded-Method": "HEAD"}
    traefik.pop("X-Original-Method")
    assert verify(sso, "?redirect=1", **traefik).status_code == 302


@pytest.mark.parametrize("change", [
    {"Sec-Fetch-Dest": "empty"}, {"Sec-Fetch-Dest": "image"}, {"Sec-Fetch-Dest": "script"},
    {"Sec-Fetch-Dest": None, "Accept": "application/json"}, {"X-Requested-With": "XMLHttpRequest"},
    {"X-Original-Method": "POST"}, {"X-Forwarded-Method": "DELETE"},
    {"Authorization": "Bearer not-a-token"},
])
def test_api_calls_and_subresources_keep_the_plain_401(sso: Server,
                                                        change: dict[str, str | None]) -> None:
    headers = {k: v for k, v in {**PAGE, **change}.items() if v is not None}
    for query in ("", "?redirect=1"):
        r = verify(sso, query, **headers)
        assert r.status_code == 401 and "x-auth-login" not in r.headers
        assert "location" not in r.headers


@pytest.mark.parametrize("change", [
    {"X-Forwarded-Host": "evil.net"}, {"X-Forwarded-Host": "example.com.evil.net"},
    {"X-Forwarded-Host": "evil-example.com"}, {"X-Forwarded-Host": "evil.net@app.example.com"},
    {"X-Forwarded-Host": "app.example.com, evil.net"}, {"X-Forwarded-Host": "app.example.com/x"},
    {"X-Forwarded-Proto": "http"}, {"X-Forwarded-Proto": "javascript"},
    {"X-Forwarded-Uri": "//evil.net/"}, {"X-Forwarded-Uri": "reports"},
    {"X-Forwarded-Uri": "/a\\b"}, {"X-Forwarded-Host": None}, {"X-Forwarded-Uri": None},
    {"X-Forwarded-Proto": None},
])
def test_a_page_off_the_domain_is_never_a_login_target(sso: Server,
                                                       change: dict[str, str | None]) -> None:
    headers = {k: v for k, v in {**PAGE, **change}.items() if v is not None}
    r = verify(sso, "?redirect=1", **headers)
    assert r.status_code == 401 and "x-auth-login" not in r.headers


def test_a_forwarded_header_given_twice_is_not_believed(sso: Server) -> None:
    headers = [(k, v) for k, v in PAGE.items()] + [("X-Forwarded-Host", "evil.net")]
    r = httpx.get(f"{sso.url}/auth/verify?redirect=1", headers=headers)
    assert r.status_code == 401 and "x-auth-login" not in r.headers


def test_only_a_trusted_proxy_is_believed(module_server_factory: Callable[..., Server]) -> None:
    untrusted = module_server_factory(public_url=PUBLIC, cookie_domain=DOMAIN,
                                      trusted_proxies="10.0.0.0/8")
    for query in ("", "?redirect=1"):
        r = verify(untrusted, query, **PAGE)
        assert r.status_code == 401 and "x-auth-login" not in r.headers


def test_without_cookie_domain_forward_auth_is_unchanged(plain: Server) -> None:
    bare = verify(plain)
    for query in ("", "?redirect=1"):
        r = verify(plain, query, **PAGE)
        assert r.status_code == 401 and r.content == bare.content
        varying = {"date", "x-request-id"}
        assert {k: v for k, v in r.headers.items() if k not in varying} == \
            {k: v for k, v in bare.headers.items() if k not in varying}


def test_the_login_page_keeps_a_next_on_the_domain_only(sso: Server, plain: Server) -> None:
    def kept(srv: Server, target: str) -> bool:
        page = httpx.get(f"{srv.url}/login", params={"next": target}).text
        return f'name="next" value="{target}"' in page

    assert kept(sso, "https://admin.example.com/x")
    assert not kept(sso, "https://evil.net/") and not kept(sso, "https://example.com.evil.net/")
    assert not kept(plain, "https://admin.example.com/x")   # the default: local paths only
    assert kept(plain, "/x") and kept(sso, "/x")


def test_a_failed_step_up_sends_the_page_to_sign_in_again(sso: Server) -> None:
    name, pw = sso.new_user("sso-stepup")
    c = client(sso)
    assert c.login(name, pw).status_code == 200
    cookie = f"__Secure-authgate={c.jar['__Secure-authgate']}"
    assert verify(sso, "?max_age=60", **PAGE, Cookie=cookie).status_code == 200
    sso.advance(120)
    api = verify(sso, "?max_age=60", Cookie=cookie)            # RFC 9470's 401, as before
    assert api.status_code == 401 and "x-auth-login" not in api.headers
    assert "insufficient_user_authentication" in api.headers["www-authenticate"]
    nginx = verify(sso, "?max_age=60", **PAGE, Cookie=cookie)
    assert nginx.status_code == 401 and nginx.headers["x-auth-login"] == f"{LOGIN}&reauth=1"
    assert nginx.headers["www-authenticate"] == api.headers["www-authenticate"]
    redirect = verify(sso, "?max_age=60&redirect=1", **PAGE, Cookie=cookie)
    assert redirect.status_code == 302 and redirect.headers["location"] == f"{LOGIN}&reauth=1"
