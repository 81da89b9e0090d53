"""Credentials read straight from the ASGI header list (the per-request path)."""

from __future__ import annotations

import pytest
from starlette.requests import HTTPConnection

from authgate.web.authn import bearer_token
from authgate.web.http import credential_headers, get_cookie, raw_header

pytestmark = pytest.mark.fast


def conn(*headers: tuple[bytes, bytes]) -> HTTPConnection:
    return HTTPConnection({"type": "http", "headers": list(headers)})


def test_repeated_cookie_headers_are_joined_and_the_first_authorization_counts() -> None:
    """HTTP/2 clients may split cookies over several ``cookie`` headers; a second
    ``Authorization`` does not replace the first."""
    c = conn((b"cookie", b"a=1"), (b"authorization", b"Bearer first"),
             (b"cookie", b"authgate=s3ss10n; b=2"), (b"authorization", b"Bearer second"))
    assert credential_headers(c) == ("Bearer first", "a=1; authgate=s3ss10n; b=2")
    assert get_cookie(c, "authgate") == "s3ss10n" and get_cookie(c, "a") == "1"
    assert bearer_token(c) == "first"
    assert raw_header(c, b"authorization") == "Bearer first"


def test_no_credential_headers() -> None:
    c = conn((b"host", b"example.com"))
    assert credential_headers(c) == (None, None)
    assert get_cookie(c, "authgate") is None and bearer_token(c) is None
    assert raw_header(c, b"cookie") is None
