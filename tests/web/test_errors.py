"""``to_response``: the one mapping from an exception to the contract's JSON error."""

from __future__ import annotations

import logging

import orjson
import pytest
from starlette.exceptions import HTTPException

from authgate.errors import (
    AuthGateError,
    BadRequest,
    CsrfError,
    InsufficientScope,
    InvalidCredentials,
    InvalidGrant,
    InvalidToken,
    NotAuthenticated,
    PayloadTooLarge,
    Throttled,
    UnsupportedMediaType,
)
from authgate.web.errors import HeadersTooLarge, InvalidBody, to_response


def body(exc: BaseException, **kw: object) -> dict[str, object]:
    return orjson.loads(to_response(exc, **kw).body)  # type: ignore[arg-type]


def test_body_status_and_no_store() -> None:
    r = to_response(BadRequest("unknown field: x"))
    assert r.status_code == 400
    assert r.body == b'{"error":"invalid_request","detail":"unknown field: x"}'
    assert r.headers["cache-control"] == "no-store" and r.headers["pragma"] == "no-cache"
    assert r.headers["content-type"] == "application/json"
    assert "www-authenticate" not in r.headers and "retry-after" not in r.headers


def test_401_challenges() -> None:
    assert to_response(NotAuthenticated()).headers["www-authenticate"] == "Bearer"
    assert to_response(NotAuthenticated(), token_sent=True).headers["www-authenticate"] == \
        'Bearer error="invalid_token"'
    assert to_response(InvalidToken()).headers["www-authenticate"] == \
        'Bearer error="invalid_token"'
    cookie = 'Cookie realm="authgate", form-action="/login", cookie-name="authgate"'
    assert to_response(InvalidToken(), challenge=cookie).headers["www-authenticate"] == cookie
    # a challenge is for 401s only
    assert "www-authenticate" not in to_response(CsrfError(), challenge=cookie).headers


def test_insufficient_scope_and_throttled() -> None:
    r = to_response(InsufficientScope("requires scope: a b"))
    assert r.status_code == 403
    assert r.headers["www-authenticate"] == 'Bearer error="insufficient_scope", scope="a b"'
    r = to_response(Throttled(7.9))
    assert r.status_code == 429 and r.headers["retry-after"] == "7"


def test_oauth_form() -> None:
    assert body(InvalidGrant(), oauth=True) == {
        "error": "invalid_grant", "error_description": "The grant is invalid, expired or revoked."}
    # RFC 6749 §5.2: a wrong password is invalid_grant (400) at the token endpoint
    r = to_response(InvalidCredentials(reason="wrong password"), oauth=True)
    assert r.status_code == 400
    assert orjson.loads(r.body)["error"] == "invalid_grant"
    assert "www-authenticate" not in r.headers
    # malformed requests are invalid_request: a 400, except what is too large
    for exc, status in ((UnsupportedMediaType(), 400), (PayloadTooLarge(), 413),
                        (HeadersTooLarge(), 431)):
        r = to_response(exc, oauth=True)
        assert r.status_code == status
        assert orjson.loads(r.body) == {"error": "invalid_request",
                                        "error_description": exc.detail}
    assert to_response(Throttled(3), oauth=True).headers["retry-after"] == "3"


def test_same_errors_outside_oauth_keep_their_codes() -> None:
    assert body(PayloadTooLarge())["error"] == "payload_too_large"
    assert body(HeadersTooLarge()) == {"error": "headers_too_large", "detail":
                                       "the request headers are larger than 16 KiB"}
    assert body(InvalidCredentials())["error"] == "invalid_credentials"
    assert to_response(InvalidBody("the request is invalid")).status_code == 422


def test_http_exceptions() -> None:
    r = to_response(HTTPException(405, "Method Not Allowed", headers={"Allow": "POST"}))
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert orjson.loads(r.body) == {"error": "method_not_allowed", "detail": "Method Not Allowed"}
    assert body(HTTPException(404)) == {"error": "not_found", "detail": "Not Found"}
    assert body(HTTPException(418)) == {"error": "http_error", "detail": "I'm a Teapot"}
    assert body(HTTPException(405), oauth=True) == {
        "error": "invalid_request", "error_description": "Method Not Allowed"}


def test_unexpected_exception_is_a_logged_500_without_details(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="authgate"):
        r = to_response(ValueError("secret detail"), where="GET /auth/me")
    assert r.status_code == 500 and r.headers["cache-control"] == "no-store"
    assert orjson.loads(r.body) == {"error": "internal", "detail": "internal error"}
    assert [rec.getMessage() for rec in caplog.records] == [
        "unhandled error on GET /auth/me: ValueError"]


@pytest.mark.parametrize(("exc", "logged"), [
    (NotAuthenticated(), False),  # no credential sent at all
    (NotAuthenticated(reason="unknown session"), True),
    (CsrfError(reason="wrong Origin"), True),
    (Throttled(5, reason="account"), True),
    (BadRequest("x"), False),
    # at the token endpoint a wrong password is an invalid_grant (400): as before, not a
    # refusal line of its own (the engine's audit event records the failure)
    (InvalidCredentials(reason="wrong password"), False),
])
def test_refusals_are_logged_with_their_reason(caplog: pytest.LogCaptureFixture,
                                                exc: AuthGateError, logged: bool) -> None:
    with caplog.at_level(logging.INFO, logger="authgate.refusals"):
        to_response(exc, oauth=isinstance(exc, InvalidCredentials))
    lines = [r for r in caplog.records if r.name == "authgate.refusals"]
    assert len(lines) == int(logged)
    if logged:
        assert lines[0].__dict__["reason"] == exc.reason


def test_insufficient_scope_header_carries_only_scope_tokens() -> None:
    """A requested scope is whatever a client sent (POST /auth/api-keys asks for any name):
    a non-Latin-1 character in it made the 403's header unencodable, a 500 (found by the
    OpenAPI fuzzer); a quote would have broken the header's quoting."""
    r = to_response(InsufficientScope('requires scope: reports:read \U00086f58x a"b ok'))
    assert r.status_code == 403
    assert r.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", scope="reports:read ok"')
    assert "\U00086f58x" in body(InsufficientScope("requires scope: \U00086f58x"))["detail"]
