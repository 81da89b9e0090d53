"""Token encryption (``TOKEN_ENCRYPTION``): access tokens as nested JWTs (RFC 7519 §5.2).

The signed access token, unchanged, is the plaintext of a compact JWE (RFC 7516) with
``alg`` ``ECDH-ES+A256KW`` on P-256, ``enc`` ``A256GCM``, ``cty: "JWT"`` and the ``kid`` of
the encryption key. The JOSE work is joserfc's; this module only keeps the keys and puts a
strict gate in front of the decryption, as :mod:`authgate.tokens` does for signatures:
exactly five base64url segments, a header of exactly ``alg``, ``enc``, ``cty``, ``kid`` and
``epk`` with the one allowed value each (so ``dir``, ``RSA1_5`` and any ``zip`` are refused
before any key is touched), an ``epk`` that is a P-256 public key (joserfc/cryptography
refuse a point off the curve) and a known ``kid``. Every refusal is :class:`InvalidToken`.

The keys live beside the signing keys, through the same :class:`KeyStore` methods, told
apart by their ``alg`` (:data:`ENC_ALG`); the private key is kept as the signing keys are
(PKCS#8 PEM in the database). They never appear in the JWKS: only the server encrypts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from authgate.errors import ConfigError, InvalidToken
from authgate.store.protocols import KeyStore

ENC_ALG = "ECDH-ES+A256KW"
ENC = "A256GCM"
_ALGORITHMS = (ENC_ALG, ENC)
_HEADER = {"alg", "enc", "cty", "kid", "epk"}
_EPK = {"kty", "crv", "x", "y"}
_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(slots=True)
class EncryptionKey:
    kid: str
    jwk: dict[str, Any]  # public part, with kid, alg and use
    encrypts_from: float
    retired_at: float | None
    drop_after: float | None
    key: ECKey = field(repr=False)


class EncryptionKeys:
    """The token-encryption keys, loaded from the signing-key records of alg ENC_ALG.

    :param enabled: whether new tokens are encrypted (``TOKEN_ENCRYPTION``); keys already
        stored are loaded either way, so tokens issued before it was turned off keep
        working until they expire.
    """

    def __init__(self, records: KeyStore, enabled: bool) -> None:
        self.records = records
        self.enabled = enabled
        self.keys: dict[str, EncryptionKey] = {}

    async def load(self, now: float, create: bool = True,
                   stored: list[Any] | None = None) -> None:
        """Load the keys from ``stored`` (the key records, read now if not given); make the
        first one when encryption is on and none is current."""
        if stored is None:
            stored = list(await self.records.signing_keys())
        rows = [r for r in stored if r["alg"] == ENC_ALG]
        if create and self.enabled and not any(r["retired_at"] is None for r in rows):
            await self.records.insert_first_key(ENC_ALG, _new_key_row(now, now))
            rows = [r for r in await self.records.signing_keys() if r["alg"] == ENC_ALG]
        keys: dict[str, EncryptionKey] = {}
        for row in rows:
            if row["drop_after"] is not None and row["drop_after"] <= now:
                continue
            private = serialization.load_pem_private_key(row["private_pem"].encode(), None)
            if not isinstance(private, ec.EllipticCurvePrivateKey):
                continue  # not ours to use: never decrypt with a key of another kind
            keys[row["kid"]] = EncryptionKey(
                row["kid"], json.loads(row["public_jwk"]), row["signs_from"],
                row["retired_at"], row["drop_after"], ECKey.import_key(private))
        self.keys = keys

    async def rotate(self, now: float, publish_ahead: float, token_ttl: float) -> str:
        """Add a key that encrypts from ``now + publish_ahead``; the current ones stop
        encrypting then and are dropped once the last token encrypted to them expired."""
        starts = now + publish_ahead
        row = _new_key_row(now, starts)
        for old in await self.records.signing_keys():
            if old["alg"] == ENC_ALG and old["retired_at"] is None:
                await self.records.update_key(old["kid"], retired_at=starts,
                                              drop_after=starts + token_ttl + 60)
        await self.records.insert_key(**row)
        return str(row["kid"])

    def encrypter(self, now: float) -> EncryptionKey:
        """The newest key allowed to encrypt at ``now``."""
        usable = [k for k in self.keys.values() if k.encrypts_from <= now
                  and (k.retired_at is None or k.retired_at > now)]
        if not usable:  # a rotation is pending and the old key retired: newest wins
            usable = list(self.keys.values())
        if not usable:
            raise ConfigError("no token-encryption key (TOKEN_ENCRYPTION is off, or no server "
                              "has started with it yet)")
        return max(usable, key=lambda k: k.encrypts_from)

    def encrypt(self, signed: str, now: float) -> str:
        key = self.encrypter(now)
        header = {"alg": ENC_ALG, "enc": ENC, "cty": "JWT", "kid": key.kid}
        return jwe.encrypt_compact(header, signed.encode("ascii"), key.key,
                                   algorithms=_ALGORITHMS)

    def decrypt(self, token: str, now: float) -> str:
        """The signed token inside ``token`` (not verified yet), or :class:`InvalidToken`."""
        from authgate.tokens import strict_json  # tokens imports keys, keys this module

        parts = token.split(".")
        if len(parts) != 5 or not all(_SEGMENT.match(p) for p in parts):
            raise InvalidToken(reason="malformed")
        header = strict_json(parts[0])
        if not isinstance(header, dict) or set(header) != _HEADER:
            raise InvalidToken(reason="JWE header not allowed")  # zip, crit, jku, apu, ...
        if header["alg"] != ENC_ALG or header["enc"] != ENC or header["cty"] != "JWT":
            raise InvalidToken(reason="JWE alg, enc or cty not allowed")
        epk = header["epk"]
        if not (isinstance(epk, dict) and set(epk) == _EPK and epk["kty"] == "EC"
                and epk["crv"] == "P-256" and isinstance(epk["x"], str)
                and isinstance(epk["y"], str)):
            raise InvalidToken(reason="JWE epk not allowed")
        kid = header["kid"]
        key = self.keys.get(kid) if isinstance(kid, str) else None
        if key is None or (key.drop_after is not None and key.drop_after <= now):
            raise InvalidToken(reason="unknown encryption key")
        try:
            plaintext = jwe.decrypt_compact(token, key.key, algorithms=_ALGORITHMS).plaintext
            return (plaintext or b"").decode("ascii")
        except (JoseError, ValueError, TypeError, KeyError, UnicodeDecodeError):
            raise InvalidToken(reason="JWE does not decrypt") from None

    def export(self, kid: str | None, now: float) -> dict[str, Any]:
        """The private JWK of ``kid`` (default: the key encrypting now)."""
        if kid is None:
            key = self.encrypter(now)
        elif kid in self.keys:
            key = self.keys[kid]
        else:
            raise ConfigError(f"no token-encryption key {kid}")
        jwk = dict(key.key.as_dict(private=True))
        jwk.update(kid=key.kid, alg=ENC_ALG, use="enc")
        return jwk


def _new_key_row(now: float, encrypts_from: float) -> dict[str, Any]:
    from authgate.keys import thumbprint

    private = ec.generate_private_key(ec.SECP256R1())
    public = {k: v for k, v in ECKey.import_key(private.public_key()).as_dict().items()
              if k in ("crv", "kty", "x", "y")}
    kid = thumbprint(public)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return {"kid": kid, "alg": ENC_ALG, "private_pem": pem,
            "public_jwk": json.dumps({**public, "kid": kid, "alg": ENC_ALG, "use": "enc"}),
            "created_at": now, "signs_from": encrypts_from}
