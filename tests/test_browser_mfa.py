"""The second-factor pages in a real browser (Debian's Chromium via Playwright): enrol on
/account (the inline SVG QR code renders under the pages' CSP, no violation reported), the
recovery codes, then sign out and sign in in two steps, landing back on ``next``.

With ``AUTHGATE_SCREENSHOTS=<dir>`` the pages are also saved there (the README's pictures).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import Page, expect

from tests import test_browser as _browser
from tests.conftest import Server

# the browser fixtures of tests/test_browser.py
browser, new_context, page = _browser.browser, _browser.new_context, _browser.page

pytestmark = pytest.mark.browser


def shot(tab: Page, tmp_path: Path, name: str) -> None:
    tab.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    target = os.environ.get("AUTHGATE_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(Path(target) / f"{name}.png"), full_page=True)


def test_enrol_and_sign_in_with_a_second_factor(server: Server, page: Page,
                                                tmp_path: Path) -> None:
    username, password = server.new_user("mfa-browser")
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text)
            if "Content Security Policy" in msg.text else None)
    page.goto(f"{server.url}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{server.url}/account")
    page.fill("#mfa-password", password)
    page.click("#mfa-enrol")
    qr = page.locator("figure.qr svg")
    expect(qr).to_be_visible()
    box = qr.bounding_box()
    assert box is not None and box["width"] > 100
    secret = page.locator("#totp-secret").inner_text()
    shot(page, tmp_path, "mfa-enrol")
    page.fill("#code", pyotp.TOTP(secret).at(time.time() + server.offset))
    page.click("button[type=submit]")
    codes = page.locator("#recovery-codes li")
    expect(codes).to_have_count(10)
    shot(page, tmp_path, "mfa-recovery-codes")
    page.goto(f"{server.url}/account")
    expect(page.locator("#mfa")).to_have_attribute("data-state", "on")
    shot(page, tmp_path, "mfa-account")
    page.click("#logout")

    page.goto(f"{server.url}/account")  # → /login?next=%2Faccount
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    expect(page.locator("form[action='/login/mfa']")).to_be_visible()
    shot(page, tmp_path, "mfa-login-step")
    page.fill("#code", pyotp.TOTP(secret).at(time.time() + server.offset + 30))
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{server.url}/account")
    expect(page.locator("#username")).to_have_text(username)
    assert violations == []
