"""Registration and the password policy (contract §2 "Passwords"; requirements E).

Login failures here count toward the module server's per-IP budget (50 per 15 min), so
the tests keep their wrong-password attempts few.
"""

from __future__ import annotations

import secrets
import time
import unicodedata
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.blackbox.conftest import TUNED
from tests.blackbox.support import assert_error, new_name, new_password, signed_in
from tests.conftest import Server


def post(server: Server, path: str, body: Any) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        return c.post(path, json=body)


def reg(server: Server, password: Any, username: str | None = None) -> httpx.Response:
    return post(server, "/auth/register",
                {"username": username or new_name("pw"), "password": password})


def login(server: Server, username: Any, password: Any) -> int:
    return post(server, "/auth/login", {"username": username, "password": password}
                ).status_code


def unique(length: int, alphabet: str = "abcdefghijklmnopqrstuvwxyz ") -> str:
    """A non-dictionary password of exactly ``length`` code points."""
    out = "q" + "".join(secrets.choice(alphabet) for _ in range(length - 1))
    if " " in alphabet and length > 8 and " " not in out:
        out = out[:4] + " " + out[5:]
    return out


def registered(server: Server, password: str) -> str:
    username = new_name("pw")
    r = reg(server, password, username)
    assert r.status_code == 201, r.text
    return username


def test_register_201_returns_the_user_without_secrets(server: Server) -> None:
    username, password = new_name("reg"), new_password()
    r = reg(server, password, username)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["username"] == username
    assert isinstance(body["id"], str) and body["id"]
    assert body.get("roles") == []
    assert password not in r.text and "argon2" not in r.text and "hash" not in r.text
    assert login(server, username, password) == 200


def test_register_409_when_taken(server: Server) -> None:
    username = new_name("taken")
    assert reg(server, new_password(), username).status_code == 201
    assert_error(reg(server, new_password(), username), 409, "username_taken")
    # Look-alikes of an existing name are the same account name.
    assert_error(reg(server, new_password(), username.upper()), 409)
    assert_error(reg(server, new_password(), f" {username} "), 409)


def test_username_lookup_is_normalised(server: Server) -> None:
    name = "José-" + uuid.uuid4().hex[:8]
    password = new_password()
    assert reg(server, password, unicodedata.normalize("NFD", name)).status_code == 201
    assert login(server, unicodedata.normalize("NFC", name), password) == 200
    assert login(server, name.upper(), password) == 200


def test_pwd_01_too_short_is_422_with_reason(server: Server) -> None:
    r = reg(server, unique(11))
    assert_error(r, 422)
    assert "short" in r.json()["detail"].lower()
    assert reg(server, unique(12)).status_code == 201


@pytest.mark.parametrize("common", ["passwordpassword", "PasswordPassword", "password1234",
                                    "passwordpassword "])
def test_pwd_common_password_is_422_with_reason(server: Server, common: str) -> None:
    r = reg(server, common)
    assert_error(r, 422)
    assert "common" in r.json()["detail"].lower() or "breach" in r.json()["detail"].lower()


@pytest.mark.parametrize("length", [64, 128])
def test_pwd_02_long_passphrases_with_spaces(server: Server, length: int) -> None:
    password = unique(length)
    assert " " in password and len(password) == length
    username = registered(server, password)
    assert login(server, username, password) == 200


def test_pwd_04_no_truncation(server: Server) -> None:
    password = unique(100)
    username = registered(server, password)
    assert login(server, username, password[:72]) == 401
    assert login(server, username, password[:64]) == 401
    assert login(server, username, password + "x") == 401
    assert login(server, username, password) == 200


def test_pwd_05_no_other_transformation(server: Server) -> None:
    password = "Mixed Case Passphrase " + uuid.uuid4().hex[:6] + " "
    username = registered(server, password)
    assert login(server, username, password.swapcase()) == 401
    assert login(server, username, password.rstrip()) == 401
    assert login(server, username, password) == 200


def test_pwd_nfc_normalisation(server: Server) -> None:
    composed = "café crème brûlée " + uuid.uuid4().hex[:8]
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    username = registered(server, composed)
    assert login(server, username, decomposed) == 200
    other = registered(server, decomposed)
    assert login(server, other, composed) == 200


@pytest.mark.parametrize("password", [
    "correct horse battery staple zebra",
    "пароль-из-пятнадцати-символов",
    "🦄🌈🔥 emoji passphrase 🔑🗝️",
    "密码是一个很长的中文句子不是吗",
    "tab\tand newline\nand nul\u0000 inside it",
    "'; DROP TABLE users; -- \" <script>",
])
def test_pwd_06_any_characters(server: Server, password: str) -> None:
    password = f"{password} {uuid.uuid4().hex[:4]}"
    username = registered(server, password)
    assert login(server, username, password) == 200


def test_pwd_06_no_composition_rules(server: Server) -> None:
    for password in (unique(20, "abcdefghij"), "x" * 3 + unique(17, "klmnopqrst")):
        r = reg(server, password)
        assert r.status_code == 201, r.text


def test_pwd_03_upper_bound_1024_code_points(server: Server) -> None:
    at_limit = unique(1023) + "é"
    assert len(at_limit) == 1024
    username = registered(server, at_limit)
    assert login(server, username, at_limit) == 200
    r = reg(server, unique(1025))
    assert_error(r, 422)
    assert "long" in r.json()["detail"].lower()
    # Login with an over-long password is just a failed login.
    assert login(server, username, at_limit + "x") == 401


def test_pwd_03_huge_password_refused_fast(server: Server) -> None:
    start = time.perf_counter()
    r = reg(server, "x" * 60_000)
    assert_error(r, 422)
    r = post(server, "/auth/login", {"username": new_name(), "password": "y" * 60_000})
    assert_error(r, 401, "invalid_credentials")
    r = reg(server, "z" * (1024 * 1024))
    assert_error(r, 413)
    assert time.perf_counter() - start < 3.0


def test_pwd_03_limit_is_consistent_between_register_and_login(server: Server) -> None:
    """A password the server accepted at registration must work at login, byte for byte:
    1025 code points as typed that are 1024 after NFC."""
    typed = "e\u0301" + unique(1023)
    assert len(typed) == 1025 and len(unicodedata.normalize("NFC", typed)) == 1024
    username = new_name("pw")
    r = reg(server, typed, username)
    assert r.status_code in (201, 422), r.text
    if r.status_code == 201:
        assert login(server, username, typed) == 200


@pytest.mark.parametrize("value", [True, False, 123, 1.5, None, ["x" * 20], {"a": "b"}])
def test_wrong_json_types_are_4xx(server: Server, value: Any) -> None:
    for body in ({"username": new_name(), "password": value},
                 {"username": value, "password": new_password()}):
        for path in ("/auth/register", "/auth/login"):
            r = post(server, path, body)
            assert 400 <= r.status_code < 500 and r.status_code != 404, (path, body, r.text)
            assert_error(r, r.status_code)
            assert not r.headers.get_list("set-cookie")


def test_wrong_json_types_in_password_change_are_4xx(server: Server) -> None:
    c, _, password = signed_in(server)
    for value in (True, 123, None, ["x"]):
        for body in ({"current_password": password, "new_password": value},
                     {"current_password": value, "new_password": new_password()}):
            r = c.unsafe("POST", "/auth/password", json=body)
            assert 400 <= r.status_code < 500, (body, r.text)
            assert_error(r, r.status_code)


@pytest.fixture(scope="module")
def closed(module_server_factory: Callable[..., Server]) -> Server:
    return module_server_factory(open_registration=False)


def test_register_403_when_registration_closed(closed: Server) -> None:
    r = reg(closed, new_password())
    assert_error(r, 403, "registration_closed")
    assert not r.headers.get_list("set-cookie")
    # The operator can still create users, who can sign in.
    username, password = closed.new_user()
    assert login(closed, username, password) == 200


def test_pwd_01_min_length_setting(tuned: Server) -> None:
    """PASSWORD_MIN_LENGTH=15 (NIST SP 800-63B-4 for single-factor passwords)."""
    assert TUNED["password_min_length"] == 15
    r = reg(tuned, unique(14))
    assert_error(r, 422)
    assert "15" in r.json()["detail"]
    password = unique(15)
    username = registered(tuned, password)
    c = tuned.client()
    assert c.login(username, password).status_code == 200
    r = c.unsafe("POST", "/auth/password",
                 json={"current_password": password, "new_password": unique(14)})
    assert_error(r, 422)
    ok = unique(15)
    r = c.unsafe("POST", "/auth/password", json={"current_password": password,
                                                 "new_password": ok})
    assert r.status_code == 204, r.text
    assert login(tuned, username, ok) == 200
