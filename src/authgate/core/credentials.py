"""Random credentials, their stored digests, and MACs under the server's secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid


def digest(secret: str) -> str:
    """SHA-256 of a 256-bit random credential, as stored (hex)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_secret() -> str:
    """256 bits from the OS CSPRNG, base64url (43 characters)."""
    return secrets.token_urlsafe(32)


def new_id() -> str:
    return uuid.uuid4().hex


def hash_for_log(value: str) -> str:
    """A short, non-reversible name for a value (an account name) in logs and events."""
    return hashlib.sha256(b"log:" + value.encode()).hexdigest()[:12]


class Macs:
    """HMAC-SHA256 under the server's stored secret (loaded by the engine at start)."""

    def __init__(self) -> None:
        self.key = b""

    def mac(self, purpose: str, value: str) -> str:
        """The MAC of ``value`` for ``purpose``, base64url (192 bits)."""
        msg = f"{purpose}:{value}".encode()
        return base64.urlsafe_b64encode(
            hmac.new(self.key, msg, hashlib.sha256).digest()[:24]).decode()

    def check(self, purpose: str, value: str, mac: str) -> bool:
        """Whether ``mac`` is the MAC of ``value`` for ``purpose`` (constant time)."""
        return hmac.compare_digest(mac.encode(), self.mac(purpose, value).encode())


class Sealer:
    """AES-256-GCM under a server secret (loaded by the engine at start): what keeps a mail
    token out of the outbox in the clear until the mail is sent."""

    def __init__(self) -> None:
        self.key = b""

    def seal(self, purpose: str, value: str) -> str:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self.key).encrypt(nonce, value.encode(), purpose.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, purpose: str, sealed: str) -> str:
        """The sealed value; ValueError when it was not sealed under this key and purpose."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        raw = base64.urlsafe_b64decode(sealed.encode())
        try:
            return AESGCM(self.key).decrypt(raw[:12], raw[12:], purpose.encode()).decode()
        except InvalidTag:
            raise ValueError("not sealed under this key") from None
