"""A sign-in method added or removed (an authenticator app, a passkey) is audited and, when
the user has an address, announced by mail (a real SMTP server: aiosmtpd). SQLite and
PostgreSQL + Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pyotp
import pytest

from tests.blackbox.test_account_mail import verified_user
from tests.blackbox.test_passkeys import add_passkey
from tests.conftest import Server, backend_server
from tests.helpers import AuthClient
from tests.mailbox import Mailbox
from tests.webauthn_soft import SoftAuthenticator

ALL_BACKENDS = True


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           contract_backend: str, mailbox: Mailbox) -> Iterator[Server]:
    with backend_server(request, tmp_path_factory, contract_backend, smtp_url=mailbox.url,
                        mail_from="Auth <auth@example.test>") as srv:
        yield srv


def signed_in(server: Server, username: str, password: str) -> AuthClient:
    c = server.client()
    assert c.login(username, password).status_code == 200
    return c


def events_on_account_page(c: AuthClient) -> str:
    r = c.get("/account")
    assert r.status_code == 200
    return r.text


def test_an_authenticator_app_added_and_removed_is_mailed(server: Server,
                                                          mailbox: Mailbox) -> None:
    username, password, email = verified_user(server, mailbox)
    c = signed_in(server, username, password)
    secret = c.unsafe("POST", "/auth/mfa/totp",
                      json={"current_password": password}).json()["secret"]
    now = time.time() + server.offset
    r = c.unsafe("POST", "/auth/mfa/totp/confirm", json={"code": pyotp.TOTP(secret).at(now)})
    assert r.status_code == 200, r.text
    added = mailbox.wait(email, 2)[1]  # after the verification mail
    assert added.subject.startswith("A sign-in method was added")
    assert "An authenticator app was added to your account" in added.text
    assert f"{server.url}/account" in added.text and "token" not in added.text
    r = c.unsafe("DELETE", "/auth/mfa/totp", json={
        "current_password": password, "code": pyotp.TOTP(secret).at(now + 30)})
    assert r.status_code == 204, r.text
    removed = mailbox.wait(email, 3)[2]
    assert removed.subject.startswith("A sign-in method was removed")
    assert "An authenticator app was removed from your account" in removed.text


def test_a_passkey_added_and_removed_is_audited_and_mailed(server: Server,
                                                           mailbox: Mailbox) -> None:
    username, password, email = verified_user(server, mailbox)
    c = signed_in(server, username, password)
    key = add_passkey(server, c, SoftAuthenticator(server.url), "Work laptop")
    added = mailbox.wait(email, 2)[1]
    assert added.subject.startswith("A sign-in method was added")
    assert 'A passkey ("Work laptop") was added to your account' in added.text
    assert "&ldquo;Work laptop&rdquo;" in added.html
    assert c.unsafe("DELETE", f"/auth/passkeys/{key['id']}").status_code == 204
    removed = mailbox.wait(email, 3)[2]
    assert 'A passkey ("Work laptop") was removed from your account' in removed.text
    page = events_on_account_page(c)
    assert 'data-type="passkey.added"' in page and 'data-type="passkey.removed"' in page


def test_a_passkey_name_cannot_inject_markup_into_the_mail(server: Server,
                                                           mailbox: Mailbox) -> None:
    username, password, email = verified_user(server, mailbox)
    c = signed_in(server, username, password)
    add_passkey(server, c, SoftAuthenticator(server.url), "<a href=x>click</a>")
    added = mailbox.wait(email, 2)[1]
    assert "<a href=x>" not in added.html and "&lt;a href=x&gt;" in added.html
