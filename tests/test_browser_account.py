"""The lifecycle's pages in Chromium (issue 11): sign up on /register, follow the
verification link from the received mail; /login → "forgot password" → the reset link →
a new password → signed in. The token never stays in the address bar."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.conftest import Server, backend_server
from tests.mailbox import Mailbox
from tests.test_browser import browser, new_context  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           mailbox: Mailbox) -> Iterator[Server]:
    with backend_server(request, tmp_path_factory, "sqlite", smtp_url=mailbox.url) as srv:
        yield srv


@pytest.fixture
def tab(new_context: Callable[..., BrowserContext]) -> Page:  # noqa: F811
    return new_context().new_page()


def test_sign_up_verify_forget_and_reset(server: Server, mailbox: Mailbox, tab: Page) -> None:
    page = tab
    name, email = f"b-{uuid.uuid4().hex[:8]}", f"b{uuid.uuid4().hex[:8]}@example.com"
    password, new = f"first {uuid.uuid4().hex} pw", f"second {uuid.uuid4().hex} pw"
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    page.goto(f"{server.url}/login")
    page.click("#register")
    page.fill("#username", name)
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button[type=submit]")
    expect(page.locator(".notice")).to_contain_text("confirm your address")

    page.goto(mailbox.wait(email)[0].link("verify-email"))
    assert page.url == f"{server.url}/verify-email"  # the token left the address bar
    page.click("#confirm")
    expect(page.locator("main")).to_contain_text("is your verified address")

    page.goto(f"{server.url}/login")
    page.click("#forgot")
    page.fill("#email", email.upper())
    page.click("button[type=submit]")
    expect(page.locator("#sent")).to_be_visible()

    page.goto(mailbox.wait(email, 2)[1].link("reset-password"))
    assert page.url == f"{server.url}/reset-password"
    page.fill("#new_password", new)
    page.click("button[type=submit]")
    expect(page.locator(".notice")).to_contain_text("password was changed")
    assert "token=" not in "".join(page.evaluate("[location.href, document.referrer]"))

    page.fill("#username", email)
    page.fill("#password", new)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{server.url}/account")
    expect(page.locator("#username")).to_have_text(name)
    expect(page.locator("#email-state")).to_have_text("verified")
    assert errors == []  # no CSP violation, nothing broken
