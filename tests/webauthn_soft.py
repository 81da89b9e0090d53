"""A software WebAuthn authenticator for HTTP tests: what a browser and a platform
authenticator together answer to ``navigator.credentials.create/get`` (``"none"``
attestation, an ES256 key, the JSON of ``PublicKeyCredential.toJSON()``). Real signatures,
checked by the server's real ``webauthn`` library; nothing is mocked."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SoftCredential:
    credential_id: bytes
    key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    counter: int = 0


@dataclass
class SoftAuthenticator:
    origin: str
    uv: bool = True  # the user was verified (PIN, biometric)
    backup_eligible: bool = False
    counting: bool = True  # a signature counter (False: always 0, as synced passkeys do)
    credentials: list[SoftCredential] = field(default_factory=list)

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge,
                           "origin": origin or self.origin, "crossOrigin": False}).encode()

    def _flags(self, extra: int = 0) -> int:
        flags = UP | extra
        if self.uv:
            flags |= UV
        if self.backup_eligible:
            flags |= BE
        return flags

    def create(self, public_key: dict[str, Any], *, origin: str | None = None,
               rp_id: str | None = None) -> dict[str, Any]:
        """The registration response to ``{"publicKey": …}`` options."""
        rp = rp_id or public_key["rp"]["id"]
        cred = SoftCredential(os.urandom(32), ec.generate_private_key(ec.SECP256R1()), rp,
                              unb64url(public_key["user"]["id"]))
        self.credentials.append(cred)
        numbers = cred.key.public_key().public_numbers()
        cose = cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"),
                            -3: numbers.y.to_bytes(32, "big")})
        attested = bytes(16) + struct.pack(">H", len(cred.credential_id)) + \
            cred.credential_id + cose
        auth_data = hashlib.sha256(rp.encode()).digest() + bytes([self._flags(AT)]) + \
            struct.pack(">I", 0) + attested
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", public_key["challenge"], origin)
        return {"id": b64url(cred.credential_id), "rawId": b64url(cred.credential_id),
                "type": "public-key", "authenticatorAttachment": "platform",
                "clientExtensionResults": {},
                "response": {"clientDataJSON": b64url(client_data),
                             "attestationObject": b64url(attestation),
                             "transports": ["internal"]}}

    def get(self, public_key: dict[str, Any], *, credential: SoftCredential | None = None,
            origin: str | None = None, counter: int | None = None,
            user_handle: bytes | None = None) -> dict[str, Any]:
        """The assertion answering ``{"publicKey": …}`` request options."""
        cred = credential or self.credentials[-1]
        if counter is not None:
            cred.counter = counter
        elif self.counting:
            cred.counter += 1
        auth_data = hashlib.sha256(cred.rp_id.encode()).digest() + \
            bytes([self._flags()]) + struct.pack(">I", cred.counter)
        client_data = self._client_data("webauthn.get", public_key["challenge"], origin)
        signature = cred.key.sign(auth_data + hashlib.sha256(client_data).digest(),
                                  ec.ECDSA(hashes.SHA256()))
        return {"id": b64url(cred.credential_id), "rawId": b64url(cred.credential_id),
                "type": "public-key", "authenticatorAttachment": "platform",
                "clientExtensionResults": {},
                "response": {"clientDataJSON": b64url(client_data),
                             "authenticatorData": b64url(auth_data),
                             "signature": b64url(signature),
                             "userHandle": b64url(user_handle if user_handle is not None
                                                  else cred.user_handle)}}
