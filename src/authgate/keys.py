"""Signing keys: generated on first start and kept in the database, rotated with overlap.

A key is bound to exactly one algorithm (RFC 8725 §3.1). Rotation publishes the new key in
the JWKS at once but lets it sign only after ``publish_ahead`` seconds (clients that cache
the JWKS learn it first); the old key stops signing then and leaves the JWKS once its last
token has expired. Private keys never leave this module: not in JWKS, not in logs, not in
``repr``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from authgate.encryption import ENC_ALG, EncryptionKeys
from authgate.errors import ConfigError
from authgate.store.protocols import KeyStore

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey

_THUMBPRINT_MEMBERS = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y"),
                       "RSA": ("e", "kty", "n"), "oct": ("k", "kty")}


def b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url)."""
    members = {k: jwk[k] for k in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def generate_private_key(alg: str) -> PrivateKey:
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise ConfigError(f"cannot generate a key for {alg}")


def check_key_matches(alg: str, key: PrivateKey) -> None:
    """Bind algorithm to key type (and size): the allow-list of RFC 8725 §3.1."""
    ok = (
        (alg == "EdDSA" and isinstance(key, ed25519.Ed25519PrivateKey))
        or (alg == "ES256" and isinstance(key, ec.EllipticCurvePrivateKey)
            and isinstance(key.curve, ec.SECP256R1))
        or (alg == "RS256" and isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048)
    )
    if not ok:
        raise ConfigError(f"the signing key does not fit SIGNING_ALG={alg} "
                          "(EdDSA: Ed25519; ES256: P-256; RS256: RSA >= 2048 bits)")


def public_jwk(alg: str, public: PublicKey) -> dict[str, Any]:
    if isinstance(public, ed25519.Ed25519PublicKey):
        jwk = json.loads(OKPAlgorithm.to_jwk(public))
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = json.loads(ECAlgorithm.to_jwk(public))
    else:
        jwk = json.loads(RSAAlgorithm.to_jwk(public))
    jwk = {k: v for k, v in jwk.items() if k in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    jwk.update(kid=thumbprint(jwk), alg=alg, use="sig")
    return jwk


@dataclass(slots=True)
class SigningKey:
    kid: str
    alg: str
    jwk: dict[str, Any]
    signs_from: float
    retired_at: float | None
    drop_after: float | None
    private: Any = field(repr=False)  # PrivateKey or HMAC secret bytes
    verifier: Any = field(repr=False)  # what PyJWT verifies with


class KeyRing:
    """The keys this process signs and verifies with, loaded from the database."""

    def __init__(self, records: KeyStore, alg: str, key_file: Path | None = None,
                 hs256_secret: bytes | None = None, encryption: bool = False) -> None:
        self.records = records
        #: The token-encryption keys (their rows sit beside ours, alg ENC_ALG).
        self.encryption = EncryptionKeys(records, encryption)
        self.alg = alg
        self.key_file = key_file
        self.hs256_secret = hs256_secret
        self.keys: dict[str, SigningKey] = {}
        self._jwks_body: bytes = b'{"keys":[]}'

    async def load(self, now: float, create: bool = True) -> None:
        keys: dict[str, SigningKey] = {}
        stored: list[Any] | None = None  # the key records, when read for the signing keys
        if self.alg == "HS256":
            secret = self.hs256_secret or b""
            kid = "hs-" + hashlib.sha256(b"authgate-kid" + secret).hexdigest()[:16]
            keys[kid] = SigningKey(kid, "HS256", {}, 0.0, None, None, secret, secret)
        elif self.key_file is not None:
            key = _load_pem(self.key_file)
            check_key_matches(self.alg, key)
            jwk = public_jwk(self.alg, key.public_key())
            keys[jwk["kid"]] = SigningKey(jwk["kid"], self.alg, jwk, 0.0, None, None, key,
                                          key.public_key())
        else:
            stored = await self.records.signing_keys()
            rows = [r for r in stored if r["alg"] != ENC_ALG]
            if create and not any(r["alg"] == self.alg and r["retired_at"] is None
                                  for r in rows):
                await self.records.insert_first_key(self.alg, self._new_key_row(now, now))
                stored = await self.records.signing_keys()
                rows = [r for r in stored if r["alg"] != ENC_ALG]
            for row in rows:
                if row["drop_after"] is not None and row["drop_after"] <= now:
                    continue
                private = serialization.load_pem_private_key(row["private_pem"].encode(), None)
                keys[row["kid"]] = SigningKey(
                    row["kid"], row["alg"], json.loads(row["public_jwk"]), row["signs_from"],
                    row["retired_at"], row["drop_after"], private, private.public_key())
        self.keys = keys
        published = [k.jwk for k in keys.values() if k.jwk and k.alg == self.alg]
        self._jwks_body = json.dumps({"keys": published}, separators=(",", ":")).encode()
        # Encryption keys stored earlier load even with TOKEN_ENCRYPTION off (their tokens
        # keep working until they expire), from the records already read.
        if stored is not None or self.encryption.enabled:
            await self.encryption.load(now, create, stored)

    async def _rows(self) -> list[Any]:
        """The stored signing keys (not the encryption keys kept beside them)."""
        return [r for r in await self.records.signing_keys() if r["alg"] != ENC_ALG]

    @property
    def kids(self) -> set[str]:
        """Every key id this ring knows: signing and encryption keys."""
        return set(self.keys) | set(self.encryption.keys)

    async def rotate(self, now: float, publish_ahead: float, token_ttl: float = 0.0) -> str:
        """Add a new key that signs from ``now + publish_ahead``; retire the current ones
        then, and drop them from the JWKS ``token_ttl`` later."""
        if self.alg == "HS256" or self.key_file is not None:
            raise ConfigError("keys come from the configuration; rotate them there")
        starts = now + publish_ahead
        row = self._new_key_row(now, starts)
        for old in await self._rows():
            if old["retired_at"] is None:
                await self.records.update_key(old["kid"], retired_at=starts,
                                              drop_after=starts + token_ttl + 60)
        await self.records.insert_key(**row)
        return str(row["kid"])

    def _new_key_row(self, now: float, signs_from: float) -> dict[str, Any]:
        key = generate_private_key(self.alg)
        jwk = public_jwk(self.alg, key.public_key())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        return {"kid": jwk["kid"], "alg": self.alg, "private_pem": pem,
                "public_jwk": json.dumps(jwk), "created_at": now, "signs_from": signs_from}

    def signer(self, now: float) -> SigningKey:
        """The newest key allowed to sign at ``now``."""
        best: SigningKey | None = None
        for key in self.keys.values():
            if key.alg != self.alg or key.signs_from > now:
                continue
            if key.retired_at is not None and key.retired_at <= now:
                continue
            if best is None or key.signs_from > best.signs_from:
                best = key
        if best is None:  # a rotation is pending and the old key retired: newest wins
            best = max((k for k in self.keys.values() if k.alg == self.alg),
                       key=lambda k: k.signs_from)
        return best

    def verifier(self, kid: str) -> SigningKey | None:
        key = self.keys.get(kid)
        return key if key is not None and key.alg == self.alg else None

    @property
    def jwks_body(self) -> bytes:
        return self._jwks_body

    def sign(self, claims: dict[str, Any], now: float) -> str:
        key = self.signer(now)
        return jwt.encode(claims, key.private, algorithm=self.alg,
                          headers={"kid": key.kid, "typ": "at+jwt"})


def _load_pem(path: Path) -> PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read SIGNING_KEY_FILE {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"SIGNING_KEY_FILE {path} is not an unencrypted PEM private key"
                          ) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey |
                      rsa.RSAPrivateKey):
        raise ConfigError(f"SIGNING_KEY_FILE {path} holds an unsupported key type")
    return key
