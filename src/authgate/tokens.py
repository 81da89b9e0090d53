"""Access tokens (RFC 9068 profile) on PyJWT, with a strict gate in front of it.

PyJWT checks the signature (with the one algorithm the key is bound to) before any claim,
then ``exp``/``iat``/``nbf``/``iss``/``aud``. In front of it this module refuses what PyJWT
would tolerate: anything but three base64url segments without padding, duplicate JSON
members, a header that is not exactly ``typ: at+jwt`` with the configured ``alg`` and a known
string ``kid``, header-supplied keys (``jwk``, ``jku``, ``x5u``, ``x5c``), ``crit``, ``b64``
and oversized tokens. Every refusal is the same :class:`InvalidToken`.

With ``TOKEN_ENCRYPTION`` the issued token is that signed token inside a compact JWE
(:mod:`authgate.encryption`); a five-segment token is decrypted first, and what it holds
then goes through every check above, as if it had been presented itself.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from typing import Any

import jwt

from authgate.errors import InvalidToken
from authgate.keys import KeyRing

MAX_TOKEN_LENGTH = 8192
_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")
_ALLOWED_HEADER = {"alg", "kid", "typ"}
_REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "jti"]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError("duplicate member")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_json(segment: str) -> Any:
    """Decode one base64url segment as JSON, refusing padding, other alphabets, invalid
    UTF-8, duplicate members and absurd nesting."""
    if not _SEGMENT.match(segment) or len(segment) % 4 == 1:
        raise InvalidToken(reason="malformed")
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        text = raw.decode("utf-8")
        if text.count("[") + text.count("{") > 64:
            raise ValueError("too deeply nested")
        return json.loads(text, object_pairs_hook=_no_duplicates,
                          parse_constant=_no_constant)
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise InvalidToken(reason="malformed") from None


def peek_header(token: str, keys: KeyRing) -> str:
    """Check the token's shape and header; return its ``kid`` (a known one)."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken(reason="malformed")
    parts = token.split(".")
    if len(parts) != 3 or not parts[2]:
        raise InvalidToken(reason="malformed")
    header = strict_json(parts[0])
    if not isinstance(header, dict) or set(header) - _ALLOWED_HEADER:
        raise InvalidToken(reason="header not allowed")
    if header.get("typ") != "at+jwt" or header.get("alg") != keys.alg:
        raise InvalidToken(reason="wrong typ or alg")
    kid = header.get("kid")
    if not isinstance(kid, str) or keys.verifier(kid) is None:
        raise InvalidToken(reason="unknown key")
    payload = strict_json(parts[1])
    if not isinstance(payload, dict):
        raise InvalidToken(reason="malformed")
    if not _SEGMENT.match(parts[2]):
        raise InvalidToken(reason="malformed")
    return kid


class AccessTokens:
    """Issue and verify access tokens against a :class:`KeyRing`."""

    def __init__(self, keys: KeyRing, issuer: str, audience: str, ttl: int,
                 leeway: int = 0, encrypt: bool = False) -> None:
        self.keys = keys
        self.encrypt = encrypt
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self.leeway = leeway

    def issue(self, *, sub: str, scope: str, roles: list[str], family_id: str, now: float,
              extra: dict[str, Any] | None = None, amr: list[str] | None = None,
              auth_time: int | None = None) -> tuple[str, dict[str, Any]]:
        iat = int(now)
        claims: dict[str, Any] = dict(extra or {})
        if amr:  # RFC 8176 / OIDC: how and when the user authenticated
            claims.update(amr=amr, auth_time=auth_time if auth_time is not None else iat)
        claims.update(
            iss=self.issuer, sub=sub, aud=self.audience, iat=iat, exp=iat + self.ttl,
            jti=secrets.token_urlsafe(16), scope=scope, roles=roles, sid=family_id,
            client_id=self.audience,
        )
        signed = self.keys.sign(claims, now)
        if self.encrypt:
            return self.keys.encryption.encrypt(signed, now), claims
        return signed, claims

    def verify(self, token: str, now: float) -> dict[str, Any]:
        """The verified claims, or :class:`InvalidToken` (whatever the reason).

        PyJWT checks the signature first, then ``iss``, ``aud`` and that the required claims
        are present; the times are checked here against the injected clock. An encrypted
        token (five segments) is decrypted first; a JWE inside a JWE is refused.
        """
        if isinstance(token, str) and len(token) <= MAX_TOKEN_LENGTH \
                and token.count(".") == 4:
            token = self.keys.encryption.decrypt(token, now)
        kid = peek_header(token, self.keys)
        key = self.keys.verifier(kid)
        if key is None or (key.drop_after is not None and key.drop_after <= now):
            raise InvalidToken(reason="unknown key")  # or past its drop time, not reloaded yet
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.verifier, algorithms=[self.keys.alg], audience=self.audience,
                issuer=self.issuer,
                options={"require": _REQUIRED_CLAIMS, "verify_exp": False,
                         "verify_iat": False, "verify_nbf": False})
        except jwt.InvalidSignatureError:
            raise InvalidToken(reason="bad signature") from None
        except (jwt.InvalidIssuerError, jwt.InvalidAudienceError):
            raise InvalidToken(reason="wrong issuer or audience") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise InvalidToken(reason="invalid claims") from None
        _check_claims(claims, now, self.leeway, self.ttl + self.leeway)
        return claims


MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z: times beyond are nonsense, not "never"


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and 0 <= value <= MAX_TIME)


def _check_claims(claims: dict[str, Any], now: float, leeway: int,
                  max_lifetime: float | None = None) -> None:
    exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf", 0)
    if not (_is_number(exp) and _is_number(iat) and _is_number(nbf)):
        raise InvalidToken(reason="invalid times")
    assert exp is not None and iat is not None and nbf is not None
    if now >= exp + leeway:
        raise InvalidToken(reason="expired")
    if iat > now + leeway + 1 or nbf > now + leeway:
        raise InvalidToken(reason="not yet valid")
    # We never issue a token living longer than ACCESS_TOKEN_TTL: one that does was not made
    # by this issuer's rules (a leaked key, a test key), and would outlive every rotation.
    if max_lifetime is not None and exp - iat > max_lifetime:
        raise InvalidToken(reason="lives longer than ACCESS_TOKEN_TTL")
    for name in ("sub", "jti", "iss"):
        if not isinstance(claims.get(name), str):
            raise InvalidToken(reason="invalid claims")
    if not isinstance(claims.get("scope", ""), str):
        raise InvalidToken(reason="invalid claims")
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise InvalidToken(reason="invalid claims")
    if "sid" in claims and not isinstance(claims["sid"], str):
        raise InvalidToken(reason="invalid claims")
