"""Where ``next=`` may lead after sign-in (authgate.next_url): a local path, or under
COOKIE_DOMAIN a URL on the sign-in domain; never anywhere else."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authgate.next_url import domain_url, host_under, local_path, safe_target
from authgate.web.pages import safe_next

DOMAIN = "example.com"
PUBLIC = "auth.example.com"


def target(value: str | None, secure: bool = True) -> str:
    return safe_target(value, public_host=PUBLIC, cookie_domain=DOMAIN, secure=secure)


@pytest.mark.parametrize("value", [
    "https://app.example.com/", "https://admin.example.com/reports?x=1&y=2#top",
    "https://example.com", "https://a.b.example.com:8443/p", "https://AUTH.example.com/x",
    "HTTPS://app.example.com/", "/account", "/page?next=https://evil.example",
])
def test_accepted(value: str) -> None:
    assert target(value) == value


@pytest.mark.parametrize("value", [
    "https://evil-example.com/", "https://example.com.evil.net/", "https://evil.net/",
    "https://badexample.com/", "https://app.example.com.", "https://app.example.com./",
    "https://user@app.example.com/", "https://user:pw@app.example.com/",
    "https://evil.net@app.example.com/", "https://app.example.com@evil.net/",
    "https://app.example.com\\@evil.net/", "https:\\\\evil.net/", "https:/evil.net/",
    "https:evil.net", "//evil.net/", "/\\evil.net", "///evil.net", "javascript:alert(1)",
    "https://app.example.com\t.evil.net/", "https://evil.net\n.example.com/",
    "https://app.example.com /", "https://app%2eexample.com/", "https://evil.net%2f.example.com/",
    "https://[::1]/", "https://127.0.0.1/", "https://app.example.com:0/",
    "https://app.example.com:99999/", "https://app.example.com:/", "https://app.exämple.com/",
    "http://app.example.com/", "ftp://app.example.com/", "data:text/html,hi", "",
    "https://" + "a" * 2048 + ".example.com/",
])
def test_refused(value: str) -> None:
    assert target(value) == "/account"


def test_plain_http_only_without_secure_cookies() -> None:
    assert target("http://app.example.com/x", secure=False) == "http://app.example.com/x"
    assert target("http://evil.net/", secure=False) == "/account"


def test_without_cookie_domain_only_local_paths() -> None:
    for value in ("https://auth.example.com/", "https://app.example.com/"):
        assert safe_target(value, public_host=PUBLIC, cookie_domain=None, secure=True) == \
            "/account"
    assert safe_target("/x?y=1", public_host=PUBLIC, cookie_domain=None, secure=True) == "/x?y=1"


def test_host_under_matches_whole_labels() -> None:
    assert host_under("example.com", "example.com")
    assert host_under("a.example.com", "example.com")
    assert not host_under("aexample.com", "example.com")
    assert not host_under("example.com.evil.net", "example.com")


# -- properties ---------------------------------------------------------------------------

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_path = st.from_regex(r"(/[A-Za-z0-9._~%!$&'()*+,;=:@?-]{0,12}){0,3}", fullmatch=True)


@settings(max_examples=300)
@given(st.text(max_size=80))
def test_any_text_lands_on_the_domain_or_the_landing_page(value: str) -> None:
    """Whatever is sent: the landing page, a local path, or a URL that two parsers (the
    stdlib's and httpx's WHATWG-style one) both read as on the sign-in domain."""
    found = target(value)
    if found == "/account":
        return
    assert found == value
    if found.startswith("/"):
        assert local_path(found) == found and not found.startswith("//")
        return
    assert "\\" not in found and found.isascii() and found.isprintable() and " " not in found
    for host in (httpx.URL(found).host, urlsplit(found).hostname):
        assert host is not None and (host == PUBLIC or host_under(host, DOMAIN))


@settings(max_examples=200)
@given(st.lists(_label, min_size=1, max_size=3), _path)
def test_a_subdomain_is_accepted(labels: list[str], path: str) -> None:
    url = f"https://{'.'.join(labels)}.{DOMAIN}{path}"
    assert domain_url(url, public_host=PUBLIC, cookie_domain=DOMAIN, secure=True) == url


@settings(max_examples=200)
@given(_label, _path, st.sampled_from(["{l}{d}", "{l}-{d}", "{d}.{l}", "{d}{l}", "{d}.{l}.net",
                                       "{l}.{d}.{l}", "{l}{d}.{l}"]))
def test_a_lookalike_is_refused(label: str, path: str, shape: str) -> None:
    host = shape.format(l=label, d=DOMAIN)
    url = f"https://{host}{path}"
    assert target(url) == "/account"


@settings(max_examples=200)
@given(_label, _path, st.sampled_from(["@", "\\", "\t", "\n", "\r", "\x00", " ", "%2e", "%40",
                                       "\u3002", "\uff0e", "#@", "?@"]),
       st.sampled_from(["evil.net", "evil.net/", ""]))
def test_an_injected_authority_never_leaves_the_domain(label: str, path: str, junk: str,
                                                        tail: str) -> None:
    url = f"https://{label}.{DOMAIN}{junk}{tail}{path}"
    found = target(url)
    if found != "/account":
        assert httpx.URL(found).host.endswith("." + DOMAIN)


@given(st.text(max_size=60))
def test_the_default_next_is_what_it_was(value: str) -> None:
    """Without COOKIE_DOMAIN, pages.safe_next keeps its rule: a local path or /account."""
    found = safe_next(value)
    assert found == "/account" or (found == value and value.startswith("/")
                                   and not value.startswith("//") and "\\" not in value)
