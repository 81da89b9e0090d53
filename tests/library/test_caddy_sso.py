"""Single sign-on across subdomains behind Caddy (examples/sso/Caddyfile.template):
``forward_auth`` → ``/auth/verify?redirect=1``, whose 302 Caddy hands to the browser. The
same names, certificate and browser as tests/library/test_nginx_sso.py."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from playwright.sync_api import Browser

from tests.conftest import Server
from tests.library.test_nginx import _wait
from tests.library.test_nginx_sso import (
    DOMAIN,
    TIMEOUT_MS,
    Stack,
    _sign_in,
    _wait_tls,
    browser,
    sso_parts,
)

pytestmark = [pytest.mark.browser, pytest.mark.subprocess]  # Caddy, Chromium, real servers

CADDY = shutil.which("caddy") or "/usr/bin/caddy"
__all__ = ["browser"]  # the fixture, shared with the nginx module


@contextlib.contextmanager
def caddy_stack(make_server: Callable[..., Server], tmp_path: Path) -> Iterator[Stack]:
    parts = sso_parts(make_server, tmp_path, CADDY, "caddy", "Caddyfile.template",
                      ("@PORT@", "{}"))
    port, app_port, auth, backend, conf = (parts.port, parts.app_port, parts.auth,
                                           parts.backend, parts.conf)
    (tmp_path / "Caddyfile").write_text(conf)
    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    caddy = subprocess.Popen([CADDY, "run", "--config", str(tmp_path / "Caddyfile"),
                              "--adapter", "caddyfile"], env=env,
                             stdout=subprocess.DEVNULL, stderr=(tmp_path / "caddy.log").open("wb"))
    try:
        _wait(f"http://127.0.0.1:{app_port}/", backend)
        _wait_tls(port, caddy, "caddy")
        yield Stack(port, auth)
    finally:
        caddy.terminate()
        backend.terminate()
        caddy.wait(10)
        backend.wait(10)


@pytest.fixture
def stack(make_server: Callable[..., Server], tmp_path: Path) -> Iterator[Stack]:
    with caddy_stack(make_server, tmp_path) as found:
        yield found


def test_caddy_one_sign_in_reaches_both_subdomains(stack: Stack, browser: Browser) -> None:
    name, pw = stack.auth.new_user("caddy", roles=("staff",))
    ctx = browser.new_context(ignore_https_errors=True)
    ctx.set_default_timeout(TIMEOUT_MS)
    try:
        page = ctx.new_page()
        wanted = stack.url("admin", "/reports?year=2026&q=a%26b")
        page.goto(wanted)                                    # Caddy hands over authgate's 302
        at = urlsplit(page.url)
        assert (at.hostname, at.path) == (f"auth.{DOMAIN}", "/login")
        assert parse_qs(at.query)["next"] == [wanted]
        _sign_in(page, name, pw)
        page.wait_for_url(wanted)
        seen = page.evaluate("JSON.parse(document.body.innerText)")
        assert seen["username"] == name and seen["roles"] == "staff"
        page.goto(stack.url("app", "/"))                     # the other app: no second sign-in
        assert urlsplit(page.url).hostname == f"app.{DOMAIN}"
        assert page.evaluate("JSON.parse(document.body.innerText)")["username"] == name
    finally:
        ctx.close()


def test_caddy_api_calls_keep_the_401(stack: Stack) -> None:
    api = stack.get("app", "/api/data", Accept="application/json")
    assert api.status_code == 401 and "location" not in api.headers
    img = stack.get("app", "/logo.png", **{"Sec-Fetch-Dest": "image"})
    assert img.status_code == 401
    nav = stack.get("app", "/page?x=1", **{"Accept": "text/html", "Sec-Fetch-Dest": "document"})
    assert nav.status_code == 302
    assert nav.headers["location"] == (f"https://auth.{DOMAIN}:{stack.port}/login?next="
                                       + quote(stack.url("app", "/page?x=1"), safe=""))
    foreign = stack.get("app", "/page", **{"Sec-Fetch-Dest": "document",
                                           "X-Forwarded-Host": "evil.example"})
    assert foreign.status_code == 302 and "evil" not in foreign.headers["location"]
