"""Hand-rolled JOSE for tests: build compact JWS byte by byte, so a test can send exactly the
malformed or malicious token it means (no library normalises it first).

The server key of the attack tests is the RFC 8037 Appendix A Ed25519 key: the tests hold
its private half and can sign "valid but wrong" tokens with the server's own key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

VECTORS_PATH = Path(__file__).with_name("jose-rfc-vectors.json")
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text())
RFC8037 = VECTORS["rfc8037_appendix_A"]
RFC8037_KID = RFC8037["A.3_thumbprint"]["thumbprint_b64url"]

# The order of the Ed25519 group (RFC 8032 §5.1): S must be < L.
ED25519_L = 2**252 + 27742317777372353535851937790883648493

Signer = Callable[[bytes], bytes]


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jbytes(obj: Any) -> bytes:
    """Compact JSON, as most signers write it."""
    return json.dumps(obj, separators=(",", ":")).encode()


def rfc8037_private_key() -> ed25519.Ed25519PrivateKey:
    d = b64u_decode(RFC8037["A.1_private_key_jwk"]["d"])
    return ed25519.Ed25519PrivateKey.from_private_bytes(d)


def write_rfc8037_pem(path: Path) -> Path:
    pem = rfc8037_private_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    path.write_bytes(pem)
    return path


def ed_signer(key: ed25519.Ed25519PrivateKey) -> Signer:
    return key.sign


def hs_signer(secret: bytes) -> Signer:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def no_signer(data: bytes) -> bytes:
    return b""


def compact(header: dict[str, Any] | bytes, payload: dict[str, Any] | bytes | list[Any] | Any,
            sign: Signer) -> str:
    """``b64u(header).b64u(payload).b64u(sign(signing input))``. ``bytes`` are used as
    given (so duplicate members, invalid UTF-8 and truncated JSON can be sent)."""
    h = header if isinstance(header, bytes) else jbytes(header)
    p = payload if isinstance(payload, bytes) else jbytes(payload)
    signing_input = f"{b64u(h)}.{b64u(p)}".encode()
    return f"{signing_input.decode()}.{b64u(sign(signing_input))}"


def resign(token: str, sign: Signer) -> str:
    """Keep the first two segments exactly and sign them again."""
    head, payload = token.split(".")[:2]
    return f"{head}.{payload}.{b64u(sign(f'{head}.{payload}'.encode()))}"


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a compact token, without any verification."""
    head, payload, _ = token.split(".")
    return json.loads(b64u_decode(head)), json.loads(b64u_decode(payload))


class Forger:
    """Builds tokens for one server: its kid, issuer, audience, clock and a real user."""

    def __init__(self, *, key: ed25519.Ed25519PrivateKey, kid: str, issuer: str,
                 audience: str, sub: str, clock: Callable[[], float] = time.time) -> None:
        self.key = key
        self.kid = kid
        self.issuer = issuer
        self.audience = audience
        self.sub = sub
        self.clock = clock
        self._n = 0

    @property
    def sign(self) -> Signer:
        return ed_signer(self.key)

    def header(self, **overrides: Any) -> dict[str, Any]:
        header: dict[str, Any] = {"alg": "EdDSA", "kid": self.kid, "typ": "at+jwt"}
        header.update(overrides)
        return {k: v for k, v in header.items() if v is not _DROP}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(self.clock())
        self._n += 1
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": self.sub, "aud": self.audience, "iat": now,
            "exp": now + 600, "jti": f"forged-{time.time_ns()}-{self._n}",
            "scope": "", "roles": []}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not _DROP}

    def token(self, header: dict[str, Any] | bytes | None = None,
              claims: Any = None, sign: Signer | None = None) -> str:
        return compact(self.header() if header is None else header,
                       self.claims() if claims is None else claims,
                       self.sign if sign is None else sign)


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


DROP: Any = _Drop()
_DROP = DROP
