"""Single sign-on across subdomains (COOKIE_DOMAIN) with examples/sso: a real nginx over
TLS serving auth., app. and admin.example.localhost (auth_request → /auth/verify) and a
real Chromium that signs in once and reaches both apps.

Why ``example.localhost`` and not the issue's ``app.localhost``/``admin.localhost``: Chromium
resolves every ``*.localhost`` name to loopback by itself (no resolver rules, no /etc/hosts),
but refuses ``Domain=localhost`` (a cookie for a whole top-level name); ``Domain=
example.localhost`` is a domain like ``example.com``. Over TLS (a certificate made here) the
deployment's defaults hold: ``COOKIE_SECURE=true``, the ``__Secure-authgate`` cookie, https
``next=`` URLs.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from tests.conftest import ROOT, Server, free_port, in_ci
from tests.library.test_nginx import _wait

pytestmark = [pytest.mark.browser, pytest.mark.subprocess]  # nginx, Chromium, real servers

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CHROMIUM = Path("/usr/bin/chromium")
DOMAIN = "example.localhost"
TIMEOUT_MS = 15_000


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for DOMAIN and *.DOMAIN (the browser is told to accept it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DOMAIN)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(DOMAIN), x509.DNSName(f"*.{DOMAIN}")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Stack:
    port: int
    auth: Server

    def url(self, sub: str, path: str = "/") -> str:
        return f"https://{sub}.{DOMAIN}:{self.port}{path}"

    def get(self, sub: str, path: str, **headers: str) -> httpx.Response:
        """A request to the proxy by name (httpx cannot resolve *.localhost: the Host header
        and the TLS server name pick the site, the certificate is not checked)."""
        with httpx.Client(verify=False) as c:  # noqa: S501 - the test's own certificate
            return c.get(f"https://127.0.0.1:{self.port}{path}",
                         headers={"Host": f"{sub}.{DOMAIN}:{self.port}", **headers},
                         extensions={"sni_hostname": f"{sub}.{DOMAIN}"})


@dataclass
class Parts:
    """What a proxy in front of authgate needs: ports, the auth server, the demo backend and
    the proxy's rendered configuration."""

    port: int
    app_port: int
    auth: Server
    backend: subprocess.Popen[bytes]
    conf: str


def sso_parts(make_server: Callable[..., Server], tmp_path: Path, tool: str, name: str,
              template: str, listen: tuple[str, str]) -> Parts:
    """Start the auth server (COOKIE_DOMAIN) and the backend, render ``template``
    (``listen``: the placeholder and format of the proxy's listen address)."""
    if not os.path.exists(tool):
        if in_ci():
            pytest.fail(f"{name} is not installed (scripts/install-tools.sh)")
        pytest.skip(f"{name} is not installed")
    port, app_port = free_port(), free_port()
    auth = make_server(
        public_url=f"https://auth.{DOMAIN}:{port}", cookie_domain=DOMAIN,
        trusted_proxies="127.0.0.1",
        allowed_origins=f"https://app.{DOMAIN}:{port},https://admin.{DOMAIN}:{port}")
    cert, key = _certificate(tmp_path)
    backend = subprocess.Popen([sys.executable, str(ROOT / "examples/nginx/backend.py"),
                                str(app_port)])
    conf = (ROOT / "examples/sso" / template).read_text()
    for placeholder, value in {"@PREFIX@": str(tmp_path), listen[0]: listen[1].format(port),
                               "@DOMAIN@": DOMAIN, "@AUTHGATE@": f"127.0.0.1:{auth.port}",
                               "@APP@": f"127.0.0.1:{app_port}", "@CERT@": str(cert),
                               "@KEY@": str(key)}.items():
        conf = conf.replace(placeholder, value)
    return Parts(port, app_port, auth, backend, conf)


@contextlib.contextmanager
def sso_stack(make_server: Callable[..., Server], tmp_path: Path) -> Iterator[Stack]:
    parts = sso_parts(make_server, tmp_path, NGINX, "nginx", "nginx.conf.template",
                      ("@LISTEN@", "127.0.0.1:{}"))
    port, app_port, auth, backend, conf = (parts.port, parts.app_port, parts.auth,
                                           parts.backend, parts.conf)
    (tmp_path / "nginx.conf").write_text(conf)
    nginx = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                             stderr=subprocess.DEVNULL)
    try:
        _wait(f"http://127.0.0.1:{app_port}/", backend)
        _wait_tls(port, nginx)
        yield Stack(port, auth)
    finally:
        nginx.terminate()
        backend.terminate()
        nginx.wait(10)
        backend.wait(10)


def _wait_tls(port: int, proc: subprocess.Popen[bytes], name: str = "nginx") -> None:
    import socket
    import time

    deadline = time.monotonic() + 20
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as raw, \
                    ctx.wrap_socket(raw, server_hostname=f"auth.{DOMAIN}"):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not answer")


@pytest.fixture
def stack(make_server: Callable[..., Server], tmp_path: Path) -> Iterator[Stack]:
    with sso_stack(make_server, tmp_path) as found:
        yield found


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        if in_ci():
            pytest.fail(f"{CHROMIUM} is missing: run scripts/install-browser.sh")
        pytest.skip(f"{CHROMIUM} is missing")
    from tests.test_browser import CHROMIUM_ARGS

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _sign_in(page: Page, name: str, pw: str) -> None:
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", pw)
    page.click("button[type=submit]")


def test_one_sign_in_reaches_both_subdomains(stack: Stack, browser: Browser) -> None:
    name, pw = stack.auth.new_user("sso", roles=("staff",))
    ctx = browser.new_context(ignore_https_errors=True)
    ctx.set_default_timeout(TIMEOUT_MS)
    try:
        page = ctx.new_page()
        wanted = stack.url("app", "/reports?year=2026&q=a%26b")
        page.goto(wanted)                                    # not signed in: to the sign-in host
        at = urlsplit(page.url)
        assert (at.hostname, at.path) == (f"auth.{DOMAIN}", "/login")
        assert parse_qs(at.query)["next"] == [wanted]        # the whole URL, query intact
        _sign_in(page, name, pw)
        page.wait_for_url(wanted)                            # ... and back after sign-in
        seen = page.evaluate("JSON.parse(document.body.innerText)")
        assert seen["username"] == name and seen["roles"] == "staff"
        assert seen["path"] == "/reports?year=2026&q=a%26b" and seen["host"].startswith("app.")

        cookies = {c["name"]: c for c in ctx.cookies()}
        session = cookies["__Secure-authgate"]
        assert session["domain"] == f".{DOMAIN}" and session["secure"] and session["httpOnly"]
        assert "__Host-authgate" not in cookies

        page.goto(stack.url("admin", "/settings"))          # the other app: no second sign-in
        assert urlsplit(page.url).hostname == f"admin.{DOMAIN}"
        seen = page.evaluate("JSON.parse(document.body.innerText)")
        assert seen["username"] == name and seen["host"].startswith("admin.")

        # A write from the admin app's own page: its origin is an ALLOWED_ORIGINS sibling.
        status = page.evaluate("""async () => {
            const me = await (await fetch('/auth/me')).json();
            const ok = await fetch('/api/save', {method: 'POST',
                                                 headers: {'X-CSRF-Token': me.csrf_token}});
            const bare = await fetch('/api/save', {method: 'POST'});
            return [ok.status, bare.status];
        }""")
        assert status == [200, 403]

        page.goto(stack.url("auth", "/account"))            # the sign-in host knows it too
        assert page.url == stack.url("auth", "/account")
        page.click("#logout")
        page.wait_for_url(stack.url("auth", "/login"))
        assert "__Secure-authgate" not in {c["name"] for c in ctx.cookies()}  # Domain cleared
        page.goto(stack.url("admin", "/settings"))          # signed out on both
        assert urlsplit(page.url).hostname == f"auth.{DOMAIN}"
    finally:
        ctx.close()


def test_a_next_to_a_foreign_host_is_refused(stack: Stack, browser: Browser) -> None:
    name, pw = stack.auth.new_user("sso-foreign")
    ctx = browser.new_context(ignore_https_errors=True)
    ctx.set_default_timeout(TIMEOUT_MS)
    visited: list[str] = []
    def refuse(route: Route) -> None:
        visited.append(route.request.url)
        route.abort()

    ctx.route(lambda url: not (urlsplit(url).hostname or "").endswith(DOMAIN), refuse)
    try:
        page = ctx.new_page()
        for foreign in ("https://evil.example/", f"https://{DOMAIN}.evil.example/",
                        f"https://evil-{DOMAIN}/", f"https://app.{DOMAIN}@evil.example/"):
            page.goto(stack.url("auth", f"/login?next={quote(foreign, safe='')}"))
            assert page.locator("input[name=next]").get_attribute("value") == "/account"
        _sign_in(page, name, pw)
        page.wait_for_url(stack.url("auth", "/account"))  # the landing page, not evil.example
        assert visited == []
    finally:
        ctx.close()


def test_api_calls_and_subresources_keep_the_401(stack: Stack) -> None:
    api = stack.get("app", "/api/data", Accept="application/json")
    assert api.status_code == 401 and "location" not in api.headers
    img = stack.get("app", "/logo.png", **{"Accept": "image/*", "Sec-Fetch-Dest": "image"})
    assert img.status_code == 401
    nav = stack.get("app", "/page?x=1", **{"Accept": "text/html", "Sec-Fetch-Dest": "document"})
    assert nav.status_code == 302
    assert nav.headers["location"] == (f"https://auth.{DOMAIN}:{stack.port}/login?next="
                                       + quote(stack.url("app", "/page?x=1"), safe=""))
    spoof = stack.get("app", "/page", **{"Sec-Fetch-Dest": "document",
                                         "X-Auth-User-Id": "admin"})
    assert spoof.status_code == 302                       # the client's X-Auth-* never count
