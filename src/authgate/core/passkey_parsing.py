"""What a browser sends in a passkey ceremony, parsed: ``PublicKeyCredential.toJSON()`` of
``navigator.credentials.get`` (an assertion) or ``.create`` (a registration response), as an
object or its JSON text, and the challenge its clientDataJSON names. Anything malformed is
:class:`InvalidPasskey` / :class:`InvalidRequest` (a 4xx), never another exception. The
ceremonies themselves are :mod:`authgate.core.passkeys`."""

from __future__ import annotations

from typing import Any

import orjson
from webauthn.helpers import parse_client_data_json
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.parse_authentication_credential_json import (
    parse_authentication_credential_json,
)
from webauthn.helpers.parse_registration_credential_json import (
    parse_registration_credential_json,
)
from webauthn.helpers.structs import AuthenticationCredential, RegistrationCredential

from authgate.errors import InvalidPasskey, InvalidRequest

MAX_CREDENTIAL_JSON = 16_384
#: What ``webauthn``'s parsers and verifiers raise on a malformed or wrong response.
PARSE_ERRORS = (WebAuthnException, ValueError, TypeError, KeyError, AttributeError)


def _credential_dict(value: Any) -> dict[str, Any]:
    """The browser's ``PublicKeyCredential.toJSON()`` (an object, or that object as a JSON
    string — the token endpoint's form fields are strings)."""
    if isinstance(value, str):
        if len(value) > MAX_CREDENTIAL_JSON:
            raise InvalidPasskey(reason="credential too large")
        try:
            value = orjson.loads(value)
        except ValueError:
            raise InvalidPasskey(reason="credential is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidRequest("a passkey credential is a JSON object")
    return value


def _challenge_of(client_data_json: bytes) -> bytes:
    try:
        return parse_client_data_json(client_data_json).challenge
    except PARSE_ERRORS:
        raise InvalidPasskey(reason="clientDataJSON unreadable") from None


def parse_assertion(value: Any) -> tuple[AuthenticationCredential, bytes]:
    """An assertion (``PublicKeyCredential.toJSON()`` of ``navigator.credentials.get``, an
    object or its JSON text) and the challenge its clientDataJSON names; anything else is
    :class:`InvalidPasskey` / :class:`InvalidRequest`, never another exception."""
    data = _credential_dict(value)
    try:
        parsed = parse_authentication_credential_json(data)
    except PARSE_ERRORS as exc:
        raise InvalidPasskey(reason=f"assertion: {exc}") from None
    return parsed, _challenge_of(parsed.response.client_data_json)


def parse_attestation(value: Any) -> tuple[RegistrationCredential, bytes]:
    """The same for a registration response (``navigator.credentials.create``)."""
    data = _credential_dict(value)
    try:
        parsed = parse_registration_credential_json(data)
    except PARSE_ERRORS as exc:
        raise InvalidPasskey(reason=f"registration response: {exc}") from None
    return parsed, _challenge_of(parsed.response.client_data_json)
