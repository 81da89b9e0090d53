"""Passkeys (WebAuthn Level 3, through Duo Labs' ``webauthn``): register several, list,
rename, delete; sign in with one alone (discoverable credentials, user verification
required); or use one as the second factor of a password sign-in.

The relying party is ``WEBAUTHN_RP_ID`` (default: ``PUBLIC_URL``'s host) and the origins a
ceremony may come from ``WEBAUTHN_ORIGINS`` (default: ``PUBLIC_URL``'s origin).

Every ceremony's challenge is 32 random bytes, stored only as its SHA-256, lives
:data:`CHALLENGE_TTL` seconds, is used up by the first response that names it, and is bound
to what asked for it: a registration to the caller's session (or token family), a second
factor to its ``mfa_token``; a passwordless sign-in has nobody to bind to (the origin and
RP ID checks of the signed response are what stop a relay). A database holds public keys
and counters only: nothing in it signs anybody in.

amr (RFC 8176): a passkey with user verification is two factors in one (the device, and the
PIN or biometric that unlocked it: a multi-factor cryptographic authenticator in NIST SP
800-63B's words), so a passkey sign-in is ``hwk user mfa`` (``swk`` for a credential the
authenticator may sync, i.e. backup-eligible) and satisfies ``mfa`` step-up.

``webauthn`` (and what it loads: ~40 ms and ~5 MB per process) is imported by the ceremonies
that use it, not with the engine: a process that never sees a passkey never loads it.
"""

from __future__ import annotations

import base64
import logging
import secrets
import struct
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from authgate.clock import Clock
from authgate.core.credentials import Macs, digest, new_id
from authgate.core.notices import FactorNotices
from authgate.core.revocation import Revocations
from authgate.core.signin import SignIn
from authgate.errors import (
    EmailNotVerified,
    InsufficientUserAuthentication,
    InvalidMfaToken,
    InvalidPasskey,
    InvalidRequest,
    NotFound,
    PasskeyLimit,
    PasskeyRefused,
)
from authgate.events import Events
from authgate.keys import b64url
from authgate.models import Principal, User
from authgate.settings import Settings
from authgate.store.passkeys import MAX_PASSKEYS_PER_USER, Passkey, PasskeyChallenge
from authgate.store.records import Records

if TYPE_CHECKING:
    from webauthn.helpers.cose import COSEAlgorithmIdentifier
    from webauthn.helpers.structs import PublicKeyCredentialDescriptor

log = logging.getLogger("authgate")

CHALLENGE_TTL = 300
#: Adding or deleting a passkey needs a sign-in at most this old (seconds).
FRESH_SIGN_IN = 600
MAX_NAME = 64


def algorithms() -> list[COSEAlgorithmIdentifier]:
    """The signature algorithms a new passkey may use: EdDSA, ES256, RS256."""
    from webauthn.helpers.cose import COSEAlgorithmIdentifier as Alg

    return [Alg.EDDSA, Alg.ECDSA_SHA_256, Alg.RSASSA_PKCS1_v1_5_SHA_256]


@dataclass(frozen=True, slots=True)
class PasskeySignIn:
    user: User
    passkey: Passkey
    amr: str  # "hwk user" or "swk user"


@dataclass(eq=False)
class Passkeys:
    settings: Settings
    clock: Clock
    records: Records
    signin: SignIn
    events: Events
    notices: FactorNotices
    macs: Macs
    revocations: Revocations

    # -- the relying party ----------------------------------------------------------------

    @property
    def rp_id(self) -> str:
        return self.settings.webauthn_rp_id or urlsplit(self.settings.public_url).hostname \
            or "localhost"

    @property
    def origins(self) -> list[str]:
        return list(self.settings.webauthn_origins) or [self.settings.public_origin]

    @staticmethod
    def binding(principal: Principal) -> str:
        """What a registration challenge is bound to: the caller's session or family."""
        if principal.session is not None:
            return digest(f"session|{principal.session.id}")
        sid = (principal.claims or {}).get("sid", "")
        return digest(f"family|{sid}|{principal.user.id}")

    def _fresh(self, principal: Principal) -> None:
        at = principal.auth_time
        if at is None or self.clock.now() - at > FRESH_SIGN_IN:
            raise InsufficientUserAuthentication(
                f"a sign-in within the last {FRESH_SIGN_IN} seconds is required",
                max_age=FRESH_SIGN_IN)

    async def _challenge(self, purpose: str, binding: str, user_id: str | None) -> bytes:
        challenge = secrets.token_bytes(32)
        now = self.clock.now()
        await self.records.put_challenge(PasskeyChallenge(
            challenge_hash=digest(b64url(challenge)), purpose=purpose, binding=binding,
            user_id=user_id, expires_at=now + CHALLENGE_TTL), now)
        return challenge

    async def _take(self, challenge: bytes, purpose: str, binding: str) -> PasskeyChallenge:
        taken = await self.records.take_challenge(digest(b64url(challenge)), purpose, binding,
                                                  self.clock.now())
        if taken is None:
            raise InvalidPasskey(reason=f"{purpose} challenge unknown, used, expired or "
                                        "not this caller's")
        return taken

    # -- the user's passkeys ------------------------------------------------------------------

    async def user_passkeys(self, user_id: str) -> list[Passkey]:
        return await self.records.user_passkeys(user_id)

    async def registration_options(self, principal: Principal) -> dict[str, Any]:
        """``PublicKeyCredentialCreationOptions`` as JSON (``navigator.credentials.create``'s
        ``publicKey``): a discoverable credential, user verification required, the user's
        passkeys excluded. Needs a sign-in within :data:`FRESH_SIGN_IN`."""
        from webauthn import generate_registration_options, options_to_json
        from webauthn.helpers.structs import (
            AttestationConveyancePreference,
            AuthenticatorSelectionCriteria,
            ResidentKeyRequirement,
            UserVerificationRequirement,
        )

        self._fresh(principal)
        user = principal.user
        existing = await self.records.user_passkeys(user.id)
        if len(existing) >= MAX_PASSKEYS_PER_USER:
            raise PasskeyLimit()
        challenge = await self._challenge("register", self.binding(principal), user.id)
        options = generate_registration_options(
            rp_id=self.rp_id, rp_name=urlsplit(self.settings.public_url).netloc or "authgate",
            user_name=user.username, user_id=user.id.encode(), challenge=challenge,
            timeout=CHALLENGE_TTL * 1000,
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.REQUIRED),
            exclude_credentials=[self._descriptor(k) for k in existing],
            supported_pub_key_algs=algorithms())
        return dict(orjson.loads(options_to_json(options)))

    @staticmethod
    def _descriptor(key: Passkey) -> PublicKeyCredentialDescriptor:
        from webauthn.helpers.structs import AuthenticatorTransport, PublicKeyCredentialDescriptor

        transports = []
        for name in key.transports:
            try:
                transports.append(AuthenticatorTransport(name))
            except ValueError:
                continue
        return PublicKeyCredentialDescriptor(
            id=base64.urlsafe_b64decode(key.credential_id + "=" * (-len(key.credential_id) % 4)),
            transports=transports or None)

    def clean_name(self, name: Any, default: str) -> str:
        if name is None or name == "":
            return default
        if not isinstance(name, str):
            raise InvalidRequest("name must be a string")
        label = " ".join(name.split())
        if not label or len(label) > MAX_NAME or not label.isprintable():
            raise InvalidRequest(f"a passkey's name is 1 to {MAX_NAME} printable characters")
        return label

    async def register(self, principal: Principal, credential: Any, name: Any = None,
                       ip: str = "") -> Passkey:
        """Check the authenticator's response to :meth:`registration_options` (this caller's
        challenge, the origin, the RP ID, user presence and verification) and keep the
        credential."""
        from webauthn import verify_registration_response
        from webauthn.helpers.structs import CredentialDeviceType

        from authgate.core.passkey_parsing import PARSE_ERRORS, parse_attestation

        self._fresh(principal)
        user = principal.user
        count = await self.records.count_passkeys(user.id)
        label = self.clean_name(name, f"Passkey {count + 1}")
        parsed, challenge = parse_attestation(credential)
        await self._take(challenge, "register", self.binding(principal))
        try:
            done = verify_registration_response(
                credential=parsed, expected_challenge=challenge, expected_rp_id=self.rp_id,
                expected_origin=self.origins, require_user_verification=True,
                supported_pub_key_algs=algorithms())
        except PARSE_ERRORS as exc:
            raise InvalidPasskey(reason=f"registration response: {exc}") from None
        now = self.clock.now()
        key = Passkey(
            id=new_id(), user_id=user.id, credential_id=b64url(done.credential_id),
            public_key=b64url(done.credential_public_key), sign_count=done.sign_count,
            transports=tuple(t.value for t in (parsed.response.transports or []))[:8],
            name=label, aaguid=str(done.aaguid),
            backup_eligible=done.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
            backed_up=done.credential_backed_up, created_at=now, last_used_at=None)
        if not await self.records.add_passkey(key):
            raise InvalidPasskey("that passkey is registered already",
                                 reason="credential id taken or passkey limit")
        self.events.emit("passkey.added", user_id=user.id, ip=ip, passkey_id=key.id,
                         aaguid=key.aaguid, backup_eligible=key.backup_eligible)
        await self.notices.factor_changed(user.id, "added", "passkey", key.name)
        return key

    async def rename(self, principal: Principal, passkey_id: Any, name: Any) -> None:
        if not isinstance(passkey_id, str) or len(passkey_id) > 64:
            raise NotFound("no such passkey")
        label = self.clean_name(name, "")
        if not label:
            raise InvalidRequest("name is required")
        if not await self.records.rename_passkey(principal.user.id, passkey_id, label):
            raise NotFound("no such passkey")

    async def delete(self, principal: Principal, passkey_id: Any, ip: str = "") -> None:
        """Delete one of the caller's passkeys (a sign-in within :data:`FRESH_SIGN_IN`:
        a stolen session alone cannot take away the owner's way back in). Every other
        session and token family of the user ends, as after a password change: the
        sign-ins made with it (on a lost device, say) are not told apart from the rest."""
        self._fresh(principal)
        if not isinstance(passkey_id, str) or len(passkey_id) > 64:
            raise NotFound("no such passkey")
        gone = await self.records.delete_passkey(principal.user.id, passkey_id)
        if gone is None:
            raise NotFound("no such passkey")
        await self.revocations.others_of(
            principal.user.id,
            keep_session=principal.session.id if principal.session else None,
            keep_family=(principal.claims or {}).get("sid"))
        self.events.emit("passkey.removed", user_id=principal.user.id, ip=ip,
                         passkey_id=gone.id)
        await self.notices.factor_changed(principal.user.id, "removed", "passkey", gone.name)

    # -- signing in ---------------------------------------------------------------------------

    def _login_challenge(self) -> bytes:
        """A stateless challenge: ``issued at (8 bytes) | nonce (16) | MAC (24)`` under the
        server secret. ``/login`` asks for one on every view (autofill): no write, no
        state; it is recorded only when used (:meth:`_spend_login_challenge`)."""
        body = struct.pack(">Q", int(self.clock.now())) + secrets.token_bytes(16)
        mac = self.macs.mac("passkey-login", body.hex())
        return body + base64.urlsafe_b64decode(mac)

    async def _spend_login_challenge(self, challenge: bytes) -> None:
        if len(challenge) != 48:
            raise InvalidPasskey(reason="not a login challenge")
        body, mac = challenge[:24], challenge[24:]
        if not self.macs.check("passkey-login", body.hex(),
                               base64.urlsafe_b64encode(mac).decode()):
            raise InvalidPasskey(reason="login challenge not ours")
        issued = struct.unpack(">Q", body[:8])[0]
        now = self.clock.now()
        if not -60 <= now - issued < CHALLENGE_TTL:
            raise InvalidPasskey(reason="login challenge expired")
        if not await self.records.spend_challenge(digest(b64url(challenge)),
                                                  issued + CHALLENGE_TTL + 60, now):
            raise InvalidPasskey(reason="login challenge used before")

    async def login_options(self) -> dict[str, Any]:
        """``PublicKeyCredentialRequestOptions`` for a passwordless sign-in (no
        ``allowCredentials``: the authenticator offers the user's discoverable passkeys;
        also what conditional mediation — autofill — asks for). No I/O."""
        from webauthn import generate_authentication_options, options_to_json
        from webauthn.helpers.structs import UserVerificationRequirement

        challenge = self._login_challenge()
        options = generate_authentication_options(
            rp_id=self.rp_id, challenge=challenge, timeout=CHALLENGE_TTL * 1000,
            user_verification=UserVerificationRequirement.REQUIRED)
        return dict(orjson.loads(options_to_json(options)))

    async def login(self, credential: Any, ip: str = "") -> PasskeySignIn:
        """A passwordless sign-in: the user whose passkey signed the challenge."""
        try:
            return await self._assert(credential, "login", "", None, ip)
        except InvalidPasskey as exc:
            self.events.emit("sign_in.failed", ip=ip, method="passkey",
                             why=exc.reason or exc.code)
            raise PasskeyRefused(reason=exc.reason) from None

    async def mfa_options(self, mfa_token: Any) -> dict[str, Any]:
        """Request options for the second factor of a pending sign-in: its user's passkeys,
        the challenge bound to the ``mfa_token``."""
        from webauthn import generate_authentication_options, options_to_json
        from webauthn.helpers.structs import UserVerificationRequirement

        if not isinstance(mfa_token, str) or not 20 <= len(mfa_token) <= 128:
            raise InvalidMfaToken()
        key = digest(mfa_token)
        pending = await self.records.get_pending(key)
        if pending is None or self.clock.now() >= pending.expires_at:
            raise InvalidMfaToken()
        keys = await self.records.user_passkeys(pending.user_id)
        if not keys:
            raise NotFound("this account has no passkey")
        challenge = await self._challenge("mfa", key, pending.user_id)
        options = generate_authentication_options(
            rp_id=self.rp_id, challenge=challenge, timeout=CHALLENGE_TTL * 1000,
            allow_credentials=[self._descriptor(k) for k in keys],
            user_verification=UserVerificationRequirement.REQUIRED)
        return dict(orjson.loads(options_to_json(options)))

    async def second_factor(self, user_id: str, mfa_token_hash: str, credential: Any,
                            ip: str = "") -> str | None:
        """The amr part (``hwk user``/``swk user``) when ``credential`` is a valid assertion
        of one of ``user_id``'s passkeys over the challenge bound to this mfa_token."""
        try:
            done = await self._assert(credential, "mfa", mfa_token_hash, user_id, ip)
        except InvalidPasskey as exc:
            log.info("passkey second factor refused", extra={"reason": exc.reason})
            return None
        return done.amr

    async def _assert(self, credential: Any, purpose: str, binding: str,
                      user_id: str | None, ip: str) -> PasskeySignIn:
        from webauthn import verify_authentication_response

        from authgate.core.passkey_parsing import PARSE_ERRORS, parse_assertion

        parsed, challenge = parse_assertion(credential)
        if purpose == "login":
            await self._spend_login_challenge(challenge)
        else:
            taken = await self._take(challenge, purpose, binding)
            if taken.user_id != user_id:
                raise InvalidPasskey(reason="a challenge for another user")
        key = await self.records.passkey_by_credential(b64url(parsed.raw_id))
        if key is None:
            raise InvalidPasskey(reason="unknown credential")
        if user_id is not None and key.user_id != user_id:
            raise InvalidPasskey(reason="another user's passkey")
        handle = parsed.response.user_handle
        if purpose == "login" and handle is None:
            raise InvalidPasskey(reason="no user handle (not a discoverable credential)")
        if handle is not None and handle != key.user_id.encode():
            raise InvalidPasskey(reason="user handle does not match the credential")
        try:
            done = verify_authentication_response(
                credential=parsed, expected_challenge=challenge, expected_rp_id=self.rp_id,
                expected_origin=self.origins, credential_public_key=base64.urlsafe_b64decode(
                    key.public_key + "=" * (-len(key.public_key) % 4)),
                credential_current_sign_count=key.sign_count, require_user_verification=True)
        except PARSE_ERRORS as exc:
            if "sign count" in str(exc):
                self.events.emit("passkey.counter_mismatch", user_id=key.user_id, ip=ip,
                                 level=logging.WARNING, passkey_id=key.id)
            raise InvalidPasskey(reason=f"assertion: {exc}") from None
        now = self.clock.now()
        if not await self.records.use_passkey(key.id, key.sign_count, done.new_sign_count,
                                              done.credential_backed_up, now):
            raise InvalidPasskey(reason="the counter moved meanwhile (a parallel use)")
        user = await self.records.get_user(key.user_id)
        if user is None or user.disabled:
            raise InvalidPasskey(reason="no such user, or disabled")
        if purpose == "login" and self.signin.require_verified and not user.email_verified:
            raise EmailNotVerified()
        kind = "swk" if key.backup_eligible else "hwk"
        key = replace(key, sign_count=done.new_sign_count, last_used_at=now)
        return PasskeySignIn(user=user, passkey=key, amr=f"{kind} user")
