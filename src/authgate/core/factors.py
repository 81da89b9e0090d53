"""Second factors: TOTP (RFC 6238 through ``pyotp``) with single-use recovery codes, and the
pending sign-in (``mfa_token``) between the first factor and the second.

Secrets at rest: a TOTP secret is stored AES-256-GCM encrypted (the user id as associated
data, so a ciphertext cannot be moved to another user) and recovery codes as
HMAC-SHA256; both keys are derived (HKDF-SHA256) from ``MFA_KEY`` when the operator sets
it, else from a random secret the database keeps (``server_secrets``, name ``mfa``).
Only with ``MFA_KEY`` is a database dump alone not enough to read the secrets.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from authgate.clock import Clock
from authgate.core.credentials import digest, hash_for_log, new_secret
from authgate.core.revocation import Revocations
from authgate.core.signin import SignIn
from authgate.errors import (
    InvalidCode,
    InvalidCredentials,
    InvalidMfaToken,
    InvalidPasskey,
    InvalidRequest,
    MfaAlreadyActive,
    MfaRequired,
    NotFound,
    Throttled,
    WrongCode,
    WrongPassword,
)
from authgate.events import Actor, Events
from authgate.models import User
from authgate.settings import Settings
from authgate.store.factors import PendingSignIn
from authgate.store.protocols import ThrottleStore
from authgate.store.records import Records

if TYPE_CHECKING:
    from authgate.core.notices import FactorNotices
    from authgate.core.passkeys import Passkeys

log = logging.getLogger("authgate")

MFA_TOKEN_TTL = 300.0
MFA_TOKEN_MAX_FAILURES = 5
RECOVERY_CODES = 10
STEP = 30  # RFC 6238 defaults, what authenticator apps support: SHA-1, 6 digits, 30 s
DIGITS = 6
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
_CIPHER_PREFIX = "v1."


def _derive(material: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(material)


def normalize_recovery(code: str) -> str:
    return "".join(c for c in code.lower() if c not in " -")


def new_recovery_code() -> str:
    """50 bits: ``xxxxx-xxxxx``."""
    chars = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
    return f"{chars[:5]}-{chars[5:]}"


@dataclass(frozen=True, slots=True)
class Enrolment:
    secret: str
    otpauth_uri: str


@dataclass(frozen=True, slots=True)
class SecondFactor:
    """A finished pending sign-in: who, what the first step asked for, how (RFC 8176)."""

    user: User
    data: dict[str, Any]
    amr: str
    auth_time: float


@dataclass(eq=False)
class Factors:
    settings: Settings
    clock: Clock
    records: Records
    signin: SignIn
    throttle: ThrottleStore
    events: Events
    revocations: Revocations | None = None
    passkeys: Passkeys | None = None  # a passkey as the second factor (set by the engine)
    notices: FactorNotices | None = None  # mail notices of factor changes
    _aead: AESGCM | None = field(default=None, init=False)
    _mac_key: bytes = field(default=b"", init=False)

    async def load_keys(self) -> None:
        """Derive the keys (at start): from MFA_KEY, else the database's own secret."""
        key = self.settings.passwords.mfa_key
        if key is not None:
            material = key.get_secret_value().encode()
        else:
            material = bytes.fromhex(await self.records.server_secret(
                "mfa", secrets.token_hex(32)))
        self.set_key_material(material)

    def set_key_material(self, material: bytes) -> None:
        self._aead = AESGCM(_derive(material, b"authgate mfa totp secret v1"))
        self._mac_key = _derive(material, b"authgate mfa recovery code v1")

    # -- secrets at rest ----------------------------------------------------------------

    def encrypt(self, secret: str, user_id: str) -> str:
        assert self._aead is not None, "Factors.load_keys was not called"
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, secret.encode(), user_id.encode())
        return _CIPHER_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def decrypt(self, stored: str, user_id: str) -> str | None:
        assert self._aead is not None, "Factors.load_keys was not called"
        if not stored.startswith(_CIPHER_PREFIX):
            return None
        try:
            raw = base64.urlsafe_b64decode(stored[len(_CIPHER_PREFIX):])
            return self._aead.decrypt(raw[:12], raw[12:], user_id.encode()).decode()
        except (InvalidTag, ValueError):
            log.error("a TOTP secret does not decrypt (MFA_KEY changed?)",
                      extra={"user_id": user_id})
            return None

    def recovery_hash(self, user_id: str, code: str) -> str:
        msg = f"{user_id}|{normalize_recovery(code)}".encode()
        return hmac.new(self._mac_key, msg, hashlib.sha256).hexdigest()

    # -- enrolment ----------------------------------------------------------------------

    async def active(self, user_id: str) -> bool:
        factor = await self.records.totp_factor(user_id)
        return factor is not None and factor.confirmed

    async def status(self, user_id: str) -> tuple[str, int]:
        """``("off" | "enrolling" | "on", recovery codes left)``: what ``/account`` shows."""
        factor = await self.records.totp_factor(user_id)
        if factor is None:
            return "off", 0
        if not factor.confirmed:
            return "enrolling", 0
        return "on", await self.records.recovery_codes_left(user_id)

    async def pending_enrolment(self, user: User) -> Enrolment | None:
        """The enrolment started and not confirmed yet (the page shows its QR code again)."""
        factor = await self.records.totp_factor(user.id)
        if factor is None or factor.confirmed:
            return None
        secret = self.decrypt(factor.secret_enc, user.id)
        return None if secret is None else Enrolment(secret, self._uri(user, secret))

    def _uri(self, user: User, secret: str) -> str:
        issuer = urlsplit(self.settings.public_url).hostname or "authgate"
        return pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=issuer)

    async def _check_password(self, user: User, password: Any, ip: str) -> None:
        try:
            await self.signin.check_password(user.username, password, ip)
        except InvalidCredentials:
            raise WrongPassword() from None

    async def enrol(self, user: User, password: Any, ip: str = "") -> Enrolment:
        """Start enrolling an authenticator app (the current password is checked, throttled
        like a login). A pending, unconfirmed enrolment is replaced."""
        await self._check_password(user, password, ip)
        if await self.active(user.id):
            raise MfaAlreadyActive()
        secret = pyotp.random_base32()  # 160 bits, RFC 4226's recommended length
        if not await self.records.put_unconfirmed_totp(
                user.id, self.encrypt(secret, user.id), self.clock.now()):
            raise MfaAlreadyActive()
        return Enrolment(secret=secret, otpauth_uri=self._uri(user, secret))

    async def confirm(self, user: User, code: Any, ip: str = "") -> list[str]:
        """Activate the enrolled app with a code from it; the recovery codes, shown once."""
        factor = await self.records.totp_factor(user.id)
        if factor is None or factor.confirmed:
            raise NotFound("no authenticator app is being enrolled")
        if not await self._totp_ok(user.id, factor.secret_enc, code):
            raise InvalidCode()
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        if not await self.records.confirm_totp(
                user.id, [self.recovery_hash(user.id, c) for c in codes], self.clock.now()):
            raise NotFound("no authenticator app is being enrolled")
        self.events.emit("mfa.enabled", user_id=user.id, ip=ip, method="totp")
        if self.notices is not None:
            await self.notices.factor_changed(user.id, "added", "totp")
        return codes

    async def remove(self, user: User, password: Any, code: Any, ip: str = "") -> None:
        """Remove the app (and the recovery codes): password and a code (app or recovery)."""
        await self._check_password(user, password, ip)
        if not await self.active(user.id):
            raise NotFound("no authenticator app is active")
        if await self._throttled_check(user.id, code, ip) is None:
            raise WrongCode()
        await self.records.delete_factors(user.id)
        self.events.emit("mfa.disabled", user_id=user.id, ip=ip, method="totp")
        if self.notices is not None:
            await self.notices.factor_changed(user.id, "removed", "totp")

    async def reset(self, user: User, *, actor: str | Actor = "operator") -> None:
        """An operator's (or admin's) removal (``authgate users mfa-reset``) of a lost
        device's sign-in methods: the authenticator app, the recovery codes and the
        passkeys go (a passkey on a lost phone signs in without a password), and every
        session and token of the user ends (whoever holds them may be who took the
        device)."""
        assert self.revocations is not None
        had = await self.records.delete_factors(user.id)
        passkeys = await self.records.delete_user_passkeys(user.id)
        await self.revocations.everything_of(user.id)
        self.events.emit("mfa.disabled", user_id=user.id, actor=actor, method="reset")
        for key in passkeys:
            self.events.emit("passkey.removed", user_id=user.id, actor=actor,
                             passkey_id=key.id)
        if self.notices is None:
            return
        if had:
            await self.notices.factor_changed(user.id, "removed", "totp", by_operator=True)
        for key in passkeys:
            await self.notices.factor_changed(user.id, "removed", "passkey", key.name,
                                              by_operator=True)

    # -- codes ------------------------------------------------------------------------------

    async def _totp_ok(self, user_id: str, secret_enc: str, code: Any) -> bool:
        """A code of the current step or one either side, never one accepted before."""
        if not isinstance(code, str) or len(code) != DIGITS or not code.isdigit():
            return False
        secret = self.decrypt(secret_enc, user_id)
        if secret is None:
            return False
        totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP)
        now_step = int(self.clock.now()) // STEP
        for step in (now_step - 1, now_step, now_step + 1):
            if hmac.compare_digest(totp.generate_otp(step), code):
                # atomic: a parallel request with the same code loses here
                return await self.records.accept_step(user_id, step)
        return False

    async def check_code(self, user_id: str, code: Any, ip: str = "") -> str | None:
        """``"totp"`` or ``"recovery_code"`` when ``code`` is a valid, unused one (it is
        used up now), else None."""
        if not isinstance(code, str) or len(code) > 64:
            return None
        code = code.strip()
        factor = await self.records.totp_factor(user_id)
        if factor is None or not factor.confirmed:
            return None
        if len(code) == DIGITS and code.isdigit():
            return "totp" if await self._totp_ok(user_id, factor.secret_enc, code) else None
        if len(normalize_recovery(code)) != 10:
            return None
        left = await self.records.use_recovery_code(
            user_id, self.recovery_hash(user_id, code), self.clock.now())
        if left is None:
            return None
        self.events.emit("mfa.recovery_code_used", user_id=user_id, ip=ip,
                         level=logging.WARNING, codes_left=left)
        return "recovery_code"

    async def _throttled_check(self, user_id: str, code: Any, ip: str) -> str | None:
        """:meth:`check_code` on the account's own counter (the login throttle's lock
        schedule; every wrong code counts, a right one clears it): :class:`Throttled`
        when locked."""
        counter = f"mfa|{user_id}"
        wait = await self.throttle.reserve(counter, ip, counter)
        if wait:
            self.events.emit("sign_in.throttled", user_id=user_id, ip=ip,
                             level=logging.WARNING, account=hash_for_log(counter))
            raise Throttled(int(wait))
        method = await self.check_code(user_id, code, ip)
        if method is not None:
            await self.throttle.succeeded(counter, ip, counter)
        return method

    # -- the pending sign-in ----------------------------------------------------------------

    async def start_pending(self, user: User, first_factor: str, **data: Any) -> str:
        """An mfa_token for ``user`` who passed ``first_factor`` (``pwd``): 5 minutes."""
        token = new_secret()
        now = self.clock.now()
        await self.records.insert_pending(PendingSignIn(
            token_hash=digest(token), user_id=user.id, first_factor=first_factor,
            data=data, expires_at=now + MFA_TOKEN_TTL, failures=0), now)
        return token

    async def required(self, user: User, first_factor: str, **data: Any) -> MfaRequired:
        """The ``mfa_required`` answer for ``user`` (a new pending sign-in), naming the
        methods the user has: ``totp``, ``recovery_code`` and, with a passkey, ``passkey``."""
        token = await self.start_pending(user, first_factor, **data)
        methods: tuple[str, ...] = ("totp", "recovery_code")
        if self.passkeys is not None and await self.records.count_passkeys(user.id):
            methods += ("passkey",)
        return MfaRequired(token, methods)

    async def finish(self, mfa_token: Any, code: Any, flow: str, ip: str = "",
                     passkey: Any = None) -> SecondFactor:
        """Check the second factor of a pending sign-in of ``flow`` (``session`` or
        ``token``): a ``code`` (TOTP or recovery) or a ``passkey`` assertion over the
        challenge bound to this mfa_token. Wrong codes and refused assertions count on the
        pending sign-in (it dies after ``MFA_TOKEN_MAX_FAILURES``); wrong codes also on the
        account's own throttle counter (an assertion cannot be guessed)."""
        if not isinstance(mfa_token, str) or not 20 <= len(mfa_token) <= 128:
            raise InvalidMfaToken()
        if passkey is not None and code is not None:
            raise InvalidRequest("send a code or a passkey, not both")
        if passkey is None and (not isinstance(code, str) or not code):
            raise InvalidRequest("code is required")
        key = digest(mfa_token)
        pending = await self.records.get_pending(key)
        now = self.clock.now()
        if pending is None or now >= pending.expires_at or pending.data.get("flow") != flow:
            raise InvalidMfaToken()
        if passkey is not None:
            if self.passkeys is None:
                raise InvalidRequest("passkeys are not available")
            method = await self.passkeys.second_factor(pending.user_id, key, passkey, ip)
        else:
            method = await self._throttled_check(pending.user_id, code, ip)
        if method is None:
            failures = await self.records.fail_pending(key, MFA_TOKEN_MAX_FAILURES)
            self.events.emit("mfa.failed", user_id=pending.user_id, ip=ip,
                             failures=failures)
            if failures >= MFA_TOKEN_MAX_FAILURES:
                raise InvalidMfaToken("too many wrong codes; sign in again",
                                      reason="mfa_token died of wrong codes")
            if passkey is not None:
                raise InvalidPasskey()
            raise InvalidCode()
        if not await self.records.take_pending(key):
            raise InvalidMfaToken()  # a parallel request finished it first
        user = await self.records.get_user(pending.user_id)
        if user is None or user.disabled:
            raise InvalidMfaToken()
        second = "otp" if passkey is None else method  # "hwk user" / "swk user"
        return SecondFactor(user=user, data=pending.data,
                            amr=f"{pending.first_factor} {second} mfa", auth_time=now)


def totp_now(secret: str, at: float | None = None) -> str:
    """The code an authenticator app shows for ``secret`` (tools and tests)."""
    return pyotp.TOTP(secret).at(int(at if at is not None else time.time()))
