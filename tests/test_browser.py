"""The web pages (contract §5) in a real browser: Debian's Chromium driven by Playwright.

Runs the secure defaults (``__Host-`` cookie, ``Secure``) over plain HTTP on 127.0.0.1:
Chromium treats loopback as a secure context, so it keeps and sends those cookies.
Install the browser with ``scripts/install-browser.sh`` (apt; never ``playwright install``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect, sync_playwright

from tests.conftest import Server, in_ci

pytestmark = [pytest.mark.browser, pytest.mark.subprocess]  # a real browser, real servers

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
TIMEOUT_MS = 10_000
SESSION_COOKIE = "__Host-authgate"      # the default COOKIE_SECURE=true name
LOGIN_COOKIE = "__Host-authgate-login"  # the pre-login (login CSRF) nonce
EVIL = "evil.example"


# -- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: run scripts/install-browser.sh (apt-get install chromium)"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def new_context(browser: Browser) -> Iterator[Callable[..., BrowserContext]]:
    """Fresh browser profiles (cookie jars); every one is closed after the test. Requests
    to evil.example never leave the machine: they get a page that says so."""
    made: list[BrowserContext] = []

    def make(**kwargs: Any) -> BrowserContext:
        ctx = browser.new_context(**kwargs)
        ctx.set_default_timeout(TIMEOUT_MS)
        ctx.route(lambda url: urlsplit(url).hostname == EVIL, _evil_page)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.close()


@pytest.fixture
def page(new_context: Callable[..., BrowserContext]) -> Page:
    return new_context().new_page()


@pytest.fixture(scope="module")
def shared_user(server: Server) -> tuple[str, str]:
    """One user for the tests that only log in (no logout everywhere, no revoking)."""
    return server.new_user("browser")


@pytest.fixture(scope="module")
def mallory(server: Server) -> tuple[str, str]:
    """The login-CSRF attacker's own account."""
    return server.new_user("mallory")


def _evil_page(route: Route) -> None:
    route.fulfill(status=200, content_type="text/html", body="<h1 id=evil>evil</h1>")


# -- helpers ---------------------------------------------------------------------------------

def session_cookie(ctx: BrowserContext, server: Server) -> dict[str, Any] | None:
    for cookie in ctx.cookies(server.url):
        if cookie["name"] == SESSION_COOKIE:
            return dict(cookie)
    return None


def fill_login(page: Page, username: str, password: str) -> None:
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")


def login(page: Page, server: Server, username: str, password: str) -> None:
    page.goto(f"{server.url}/login")
    fill_login(page, username, password)
    expect(page).to_have_url(f"{server.url}/account")
    expect(page.locator("#username")).to_have_text(username)


def account_rows(page: Page) -> list[str]:
    return [str(r.get_attribute("data-id")) for r in page.locator("tr.entry").all()]


# -- /login ----------------------------------------------------------------------------------

def test_login_form_works_without_javascript(new_context: Callable[..., BrowserContext],
                                             server: Server,
                                             shared_user: tuple[str, str]) -> None:
    page = new_context(java_script_enabled=False).new_page()
    response = page.goto(f"{server.url}/login")
    assert response is not None and response.status == 200
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "form-action 'self'" in csp
    expect(page).to_have_title(re.compile("Sign in"))
    form = page.locator("form[method=post][action='/login']")
    expect(form.locator("input[name=username]")).to_be_visible()
    expect(form.locator("input[name=password][type=password]")).to_be_visible()
    expect(form.locator("input[name=remember][type=checkbox]")).to_be_visible()
    assert form.locator("input[type=hidden][name=form_token]").get_attribute("value")
    # the stylesheet loads under the CSP (a broken link would leave the page unstyled)
    assert page.locator("main.card").evaluate("e => getComputedStyle(e).borderRadius") != "0px"

    fill_login(page, *shared_user)
    expect(page).to_have_url(f"{server.url}/account")
    expect(page.locator("#username")).to_have_text(shared_user[0])
    expect(page.locator("tr.entry.current")).to_have_count(1)


def test_login_shows_account_and_keeps_an_httponly_secure_cookie(
        page: Page, server: Server, shared_user: tuple[str, str]) -> None:
    page.set_viewport_size({"width": 1000, "height": 720})
    page.goto(f"{server.url}/login")
    page.screenshot(path="/tmp/authgate-login.png", full_page=True)
    fill_login(page, *shared_user)
    expect(page).to_have_url(f"{server.url}/account")
    expect(page.locator("#username")).to_have_text(shared_user[0])
    current = page.locator("tr.entry.current")
    expect(current).to_have_count(1)
    expect(current.locator(".badge")).to_have_text("This session")
    expect(page.locator("#logout")).to_be_visible()
    expect(page.locator("#logout-all")).to_be_visible()
    page.screenshot(path="/tmp/authgate-account.png", full_page=True)

    # Secure + __Host- cookies are kept and sent over http://127.0.0.1 (a secure context)
    cookie = session_cookie(page.context, server)
    assert cookie is not None, page.context.cookies()
    assert cookie["httpOnly"] is True
    assert cookie["secure"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["path"] == "/"
    assert cookie["domain"] == "127.0.0.1"  # host-only: no Domain attribute
    assert page.evaluate("window.isSecureContext") is True
    # HttpOnly: script cannot read it
    assert "authgate" not in page.evaluate("document.cookie")


def test_pages_fit_wide_and_narrow_screens(new_context: Callable[..., BrowserContext],
                                          server: Server) -> None:
    """No sideways scrolling on a desktop or a 360 px phone, with a long user agent in the
    sessions list; every revoke button stays on screen."""
    username, password = server.new_user("narrow")
    page = new_context(viewport={"width": 360, "height": 740}).new_page()
    overflow = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    page.goto(f"{server.url}/login")
    assert page.evaluate(overflow) <= 0
    login(page, server, username, password)
    with server.client(headers={"User-Agent": "an-api-client/1.0 " + "x" * 150}) as c:
        assert c.token(username, password).status_code == 200  # an API token row
        assert c.login(username, password).status_code == 200  # another session row
    for width in (360, 1280):
        page.set_viewport_size({"width": width, "height": 740})
        page.reload()
        expect(page.locator("tr.entry")).to_have_count(3)
        assert page.evaluate(overflow) <= 0, width
        for button in page.locator("tr.entry button").all():
            box = button.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
        if width == 360:
            page.screenshot(path="/tmp/authgate-account-360.png", full_page=True)


def test_wrong_password_shows_an_error_and_stays_on_login(
        page: Page, server: Server, shared_user: tuple[str, str]) -> None:
    page.goto(f"{server.url}/login")
    with page.expect_response(lambda r: r.request.method == "POST") as info:
        fill_login(page, shared_user[0], "not the password at all")
    assert info.value.status == 401
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_role("alert")).to_contain_text("Invalid username or password")
    expect(page.locator("#username")).to_have_value(shared_user[0])
    expect(page.locator("#password")).to_have_value("")
    assert session_cookie(page.context, server) is None
    # the form is usable again: the right password now works
    page.fill("#password", shared_user[1])
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{server.url}/account")


@pytest.mark.parametrize("next_", ["/account?from=next", "https://evil.example/",
                                   "//evil.example"])
def test_next_is_followed_only_when_local(page: Page, server: Server,
                                          shared_user: tuple[str, str], next_: str) -> None:
    page.goto(f"{server.url}/login?next={quote(next_, safe='')}")
    fill_login(page, *shared_user)
    expected = next_ if next_.startswith("/account") else "/account"
    expect(page).to_have_url(f"{server.url}{expected}")
    expect(page.locator("#username")).to_have_text(shared_user[0])


@pytest.mark.parametrize("next_", ["https://evil.example/", "//evil.example",
                                   "/\\evil.example", "/\t/evil.example", "http:evil.example"])
def test_tampered_next_field_is_not_followed(page: Page, server: Server,
                                             shared_user: tuple[str, str], next_: str) -> None:
    """The server checks ``next`` again on POST, not only when it renders the form."""
    page.goto(f"{server.url}/login")
    page.locator("input[name=next]").evaluate("(e, v) => { e.value = v; }", next_)
    fill_login(page, *shared_user)
    expect(page).to_have_url(f"{server.url}/account")


# -- /account --------------------------------------------------------------------------------

def test_account_redirects_to_login_when_signed_out(page: Page, server: Server,
                                                    shared_user: tuple[str, str]) -> None:
    page.goto(f"{server.url}/account")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Faccount$"))
    expect(page.locator("form[action='/login']")).to_be_visible()
    fill_login(page, *shared_user)
    expect(page).to_have_url(f"{server.url}/account")


def test_revoke_another_session(page: Page, server: Server) -> None:
    username, password = server.new_user("revoke")
    login(page, server, username, password)
    other = server.client(headers={"User-Agent": "second-device/1.0"})
    assert other.login(username, password).status_code == 200
    assert other.get("/auth/me").status_code == 200

    page.reload()
    expect(page.locator("tr.entry")).to_have_count(2)
    target = page.locator("tr.entry:not(.current)")
    expect(target).to_contain_text("second-device/1.0")
    target_id = target.get_attribute("data-id")
    target.get_by_role("button", name="Revoke").click()

    expect(page).to_have_url(f"{server.url}/account?done=revoked")
    expect(page.get_by_role("status")).to_contain_text("Signed out of that session")
    expect(page.locator("tr.entry")).to_have_count(1)
    expect(page.locator("tr.entry.current")).to_have_count(1)
    assert target_id not in account_rows(page)
    assert other.get("/auth/me").status_code == 401


def test_log_out(page: Page, server: Server) -> None:
    username, password = server.new_user("logout")
    login(page, server, username, password)
    old = session_cookie(page.context, server)
    assert old is not None
    page.click("#logout")
    expect(page).to_have_url(f"{server.url}/login")
    assert session_cookie(page.context, server) is None
    page.goto(f"{server.url}/account")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Faccount$"))
    # the old cookie value is dead server-side too, not only forgotten by the browser
    r = httpx.get(f"{server.url}/auth/me", headers={"Cookie": f"{SESSION_COOKIE}={old['value']}"})
    assert r.status_code == 401


def test_log_out_everywhere_ends_other_browsers(new_context: Callable[..., BrowserContext],
                                                server: Server) -> None:
    username, password = server.new_user("everywhere")
    laptop, phone = new_context().new_page(), new_context().new_page()
    login(laptop, server, username, password)
    login(phone, server, username, password)
    laptop.reload()
    expect(laptop.locator("tr.entry")).to_have_count(2)

    laptop.click("#logout-all")
    expect(laptop).to_have_url(f"{server.url}/login")
    assert session_cookie(laptop.context, server) is None
    phone.goto(f"{server.url}/account")
    expect(phone).to_have_url(re.compile(r"/login\?next=%2Faccount$"))
    laptop.goto(f"{server.url}/account")
    expect(laptop).to_have_url(re.compile(r"/login\?next=%2Faccount$"))


# -- login CSRF ------------------------------------------------------------------------------

class _AttackerSite:
    """A page on another origin (127.0.0.1, another port) with a form posting to /login."""

    def __init__(self, html: str, set_cookie: str | None = None) -> None:
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = site.html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                if site.set_cookie:
                    self.send_header("Set-Cookie", site.set_cookie)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.html = html
        self.set_cookie = set_cookie
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def attacker_form(server: Server, username: str, password: str, form_token: str) -> str:
    return f"""<!doctype html><title>win a prize</title>
<form method="post" action="{server.url}/login">
  <input type="hidden" name="form_token" value="{form_token}">
  <input type="hidden" name="next" value="/account">
  <input type="hidden" name="username" value="{username}">
  <input type="hidden" name="password" value="{password}">
  <button type="submit" id="go">Claim</button>
</form>"""


def attacker_token(server: Server) -> tuple[str, str]:
    """What an attacker gets by loading /login themselves: (nonce cookie, form token)."""
    r = httpx.get(f"{server.url}/login")
    nonce = r.cookies.get(LOGIN_COOKIE)
    match = re.search(r'name="form_token" value="([^"]+)"', r.text)
    assert nonce and match, r.headers
    return nonce, match.group(1)


def submit_and_expect_refusal(page: Page, server: Server, origin: str) -> None:
    with page.expect_response(f"{server.url}/login") as info:
        page.click("#go")
    assert info.value.request.header_value("origin") == origin
    assert info.value.status == 403
    expect(page).to_have_url(f"{server.url}/login")
    expect(page.get_by_role("alert")).to_contain_text("another site")
    assert session_cookie(page.context, server) is None
    page.goto(f"{server.url}/account")
    expect(page).to_have_url(re.compile(r"/login\?next="))


@pytest.mark.parametrize("victim_saw_login", [False, True])
def test_login_csrf_from_a_sibling_origin_is_refused(
        page: Page, server: Server, mallory: tuple[str, str], victim_saw_login: bool) -> None:
    """Login CSRF: a page on 127.0.0.1:<other port> (same site, other origin) submits the
    attacker's credentials with a form token the attacker fetched for themselves."""
    if victim_saw_login:  # the victim holds a pre-login nonce of their own
        page.goto(f"{server.url}/login")
        assert any(c["name"] == LOGIN_COOKIE for c in page.context.cookies(server.url))
    _nonce, token = attacker_token(server)
    site = _AttackerSite(attacker_form(server, *mallory, token))
    try:
        page.goto(site.url)
        submit_and_expect_refusal(page, server, site.url.rstrip("/"))
    finally:
        site.close()


def test_login_csrf_with_a_tossed_nonce_cookie_is_refused_by_origin(
        page: Page, server: Server, mallory: tuple[str, str]) -> None:
    """Cookies ignore ports, so a sibling origin can plant its own nonce cookie next to the
    matching form token; only the Origin check stands in the way — and must."""
    nonce, token = attacker_token(server)
    # control: the same nonce + token from the right origin would log in
    ok = httpx.post(f"{server.url}/login", headers={"Origin": server.url,
                                                     "Cookie": f"{LOGIN_COOKIE}={nonce}"},
                    data={"form_token": token, "username": mallory[0],
                          "password": mallory[1]})
    assert ok.status_code == 303, ok.text
    nonce, token = attacker_token(server)
    site = _AttackerSite(attacker_form(server, *mallory, token),
                         set_cookie=f"{LOGIN_COOKIE}={nonce}; Path=/; Secure; HttpOnly; "
                                    "SameSite=Lax")
    try:
        page.goto(site.url)
        tossed = [c for c in page.context.cookies(server.url) if c["name"] == LOGIN_COOKIE]
        assert tossed and tossed[0]["value"] == nonce  # the toss worked: Origin must stop it
        submit_and_expect_refusal(page, server, site.url.rstrip("/"))
    finally:
        site.close()


def test_login_csrf_from_another_site_is_refused(page: Page, server: Server,
                                                 mallory: tuple[str, str]) -> None:
    """A cross-site page (``http://attacker.test``, served by Playwright) and an opaque
    origin (``about:blank`` content) posting to /login."""
    _nonce, token = attacker_token(server)
    html = attacker_form(server, *mallory, token)
    page.context.route("http://attacker.test/**",
                       lambda route: route.fulfill(status=200, content_type="text/html",
                                                   body=html))
    page.goto("http://attacker.test/")
    submit_and_expect_refusal(page, server, "http://attacker.test")

    blank = page.context.new_page()
    blank.set_content(html)
    submit_and_expect_refusal(blank, server, "null")


# -- through the nginx example ---------------------------------------------------------------

def test_browser_signs_in_through_nginx(new_context: Callable[..., BrowserContext],
                                        make_server: Callable[..., Server],
                                        tmp_path: Path) -> None:
    """examples/nginx in Chromium, favicon and all: a protected page sends the browser to
    /login, the browser fetches /favicon.ico (and a second /login view) meanwhile, and the
    form on screen still signs in and lands back on the page."""
    from tests.library.test_nginx import nginx_stack

    with nginx_stack(make_server, tmp_path) as (front, auth):
        name, password = auth.new_user("nginx-browser")
        ctx = new_context()
        page = ctx.new_page()
        page.goto(f"{front}/page")
        expect(page).to_have_url(re.compile(r"/login\?next=%2Fpage|/login\?next=/page"))
        # what a second tab or a prefetch does: another view of /login
        other = ctx.new_page()
        other.goto(f"{front}/login")
        other.close()
        fill_login(page, name, password)
        expect(page).to_have_url(f"{front}/page")
        assert name in page.content()


def test_browser_signs_in_on_a_port_given_only_by_serve_port(
        page: Page, tmp_path: Path) -> None:
    """``authgate serve --port N`` with no PUBLIC_URL: the form at that port signs in."""
    from tests.blackbox.test_first_hour import serve_without_public_url

    srv = serve_without_public_url(tmp_path)
    try:
        name, password = srv.new_user("port-only")
        login(page, srv, name, password)
        expect(page).to_have_url(f"{srv.url}/account")
        expect(page.locator("body")).to_contain_text(name)
    finally:
        srv.stop()
