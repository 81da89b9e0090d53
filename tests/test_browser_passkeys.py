"""Passkeys in a real browser: Debian's Chromium (Playwright) with a virtual authenticator
(the DevTools protocol's ``WebAuthn.addVirtualAuthenticator``: CTAP2, internal transport,
resident keys, user verification). On ``http://localhost:PORT``: browsers refuse IP
addresses as RP IDs, and treat localhost as a secure context.

Register on /account ("Add a passkey"), sign out, sign in with the passkey alone ("Sign in
with a passkey"), then with a password and the passkey as the second factor ("Use a
passkey"); no CSP violation on the way (the pages' script is /static/passkeys.js).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import CDPSession, Page, expect

from tests import test_browser as _browser
from tests.conftest import Server, free_port, server_class
from tests.test_browser_mfa import shot

# the browser fixtures of tests/test_browser.py
browser, new_context, page = _browser.browser, _browser.new_context, _browser.page

pytestmark = [pytest.mark.browser, pytest.mark.subprocess]


@pytest.fixture(scope="module")
def local_server(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = free_port()
    srv = server_class(request)(tmp_path_factory.mktemp("passkeys"),
                                {"public_url": f"http://localhost:{port}"}, 1, port).start()
    yield srv
    srv.stop()


def virtual_authenticator(page: Page) -> tuple[CDPSession, str]:
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    made = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
        "hasUserVerification": True, "isUserVerified": True,
        "automaticPresenceSimulation": True}})
    return cdp, str(made["authenticatorId"])


def me(page: Page, base: str) -> dict[str, object]:
    page.goto(f"{base}/auth/me")
    return dict(json.loads(page.locator("body").inner_text()))


def test_register_then_sign_in_with_a_passkey_alone_and_as_second_factor(
        local_server: Server, page: Page, tmp_path: Path) -> None:
    base = f"http://localhost:{local_server.port}"
    username, password = local_server.new_user("passkey-browser")
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text)
            if "Content Security Policy" in msg.text else None)
    cdp, authenticator = virtual_authenticator(page)

    page.goto(f"{base}/login")
    expect(page.locator("#passkey-login")).to_be_visible()  # the script ran under the CSP
    assert page.get_attribute("#username", "autocomplete") == "username webauthn"
    shot(page, tmp_path, "passkeys-login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("form[action='/login'] button[type=submit]")
    expect(page).to_have_url(f"{base}/account")

    # register on /account
    expect(page.locator("#add-passkey")).to_be_visible()
    page.fill("#passkey-new-name", "Virtual key")
    page.click("#add-passkey")
    expect(page.locator("#passkey-added")).to_be_visible()
    rows = page.locator("tr.passkey")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".passkey-name")).to_contain_text("Virtual key")
    creds = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    assert len(creds["credentials"]) == 1 and creds["credentials"][0]["isResidentCredential"]
    shot(page, tmp_path, "passkeys-account")
    page.click("#logout")

    # sign in with the passkey alone: autofill (conditional mediation), which Chromium's
    # virtual authenticator answers at once with the one discoverable credential
    page.goto(f"{base}/login")
    expect(page).to_have_url(f"{base}/account")
    expect(page.locator("#username")).to_have_text(username)
    who = me(page, base)
    assert who["amr"] == ["hwk", "user", "mfa"], who
    page.goto(f"{base}/account")
    page.click("#logout")

    # a browser without conditional mediation: the "Sign in with a passkey" button
    page.add_init_script("Object.defineProperty(PublicKeyCredential, "
                         "'isConditionalMediationAvailable', {value: undefined});")
    page.goto(f"{base}/login")
    page.wait_for_timeout(500)
    expect(page).to_have_url(f"{base}/login")  # nothing happened by itself
    page.click("#passkey-login")
    expect(page).to_have_url(f"{base}/account")
    expect(page.locator("#username")).to_have_text(username)
    assert me(page, base)["amr"] == ["hwk", "user", "mfa"]

    # add an authenticator app: a password sign-in now asks for a second factor
    page.goto(f"{base}/account")
    page.fill("#mfa-password", password)
    page.click("#mfa-enrol")
    secret = page.locator("#totp-secret").inner_text()
    page.fill("#code", pyotp.TOTP(secret).at(time.time() + local_server.offset))
    page.click("button[type=submit]")
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    page.goto(f"{base}/account")
    page.click("#logout")

    # password, then the passkey as the second factor
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("form[action='/login'] button[type=submit]")
    expect(page.locator("form[action='/login/mfa']")).to_be_visible()
    expect(page.locator("#passkey-mfa")).to_be_visible()
    shot(page, tmp_path, "passkeys-second-step")
    page.click("#passkey-mfa")
    expect(page).to_have_url(f"{base}/account")
    who = me(page, base)
    assert who["amr"] == ["pwd", "hwk", "user", "mfa"], who

    # rename and delete work as plain forms
    page.goto(f"{base}/account")
    row = page.locator("tr.passkey").first
    row.locator("input[name=name]").fill("Renamed")
    row.locator("form[action='/account/passkey-rename'] button").click()
    expect(page.locator("tr.passkey .passkey-name")).to_contain_text("Renamed")
    page.locator("form[action='/account/passkey-delete'] button").click()
    expect(page.locator("tr.passkey")).to_have_count(0)
    assert violations == []

