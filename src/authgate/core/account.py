"""The account lifecycle by mail: verification, address change, forgotten password and
reset, and deleting one's own account.

Every mail carries at most one token: 256 random bits (``new_secret``), stored only as its
SHA-256, single use, short-lived, and queued in the outbox in the same transaction as the
token (sealed there until it is sent). The pages the links open are
``{PUBLIC_URL}/verify-email`` and ``{PUBLIC_URL}/reset-password``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from authgate.clock import Clock
from authgate.core.credentials import Sealer, digest, new_secret
from authgate.core.revocation import Revocations
from authgate.core.signin import SignIn
from authgate.core.users import Users
from authgate.errors import (
    EmailState,
    EmailTaken,
    InvalidCredentials,
    InvalidEmail,
    InvalidMailToken,
    InvalidRequest,
    Throttled,
    WrongPassword,
)
from authgate.events import Events
from authgate.models import Principal, Revocation, User
from authgate.passwords import check_policy
from authgate.settings import Settings
from authgate.store.mail import Mail, MailToken
from authgate.store.records import Records
from authgate.store.users import email_key

MAX_TOKEN_LENGTH = 128


def clean_email(value: Any) -> str:
    """The address normalised by ``email-validator`` (syntax only: no DNS), else
    :class:`InvalidEmail`."""
    from email_validator import EmailNotValidError, validate_email

    if not isinstance(value, str):
        raise InvalidRequest("email must be a string")
    if len(value) > 320:
        raise InvalidEmail("that email address is too long")
    try:
        return str(validate_email(value, check_deliverability=False).normalized)
    except EmailNotValidError as exc:
        raise InvalidEmail(f"not a valid email address: {exc}") from None


def mask(email: str) -> str:
    """``n***@example.com``: enough to recognise an address, not to learn it."""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}"


@dataclass(eq=False)
class Account:
    settings: Settings
    clock: Clock
    records: Records
    users: Users
    signin: SignIn
    revocations: Revocations
    events: Events
    sealer: Sealer
    wake: Callable[[], None]  # the mail sender: something was queued

    # -- registration and verification ----------------------------------------------------

    async def register(self, username: Any, password: Any, email: Any = None, *,
                       ip: str | None = None) -> User:
        """Open registration, with an optional address (a verification mail goes to it)."""
        address = clean_email(email) if email is not None else None
        user = await self.users.register(username, password, ip=ip, email=address)
        if address is not None:
            await self._send_token(user, "verify", address)
        return user

    async def send_verification(self, principal: Principal) -> None:
        """A new verification mail to the caller's (unverified) address."""
        user = await self._fresh(principal.user.id)
        if not user.email:
            raise EmailState("there is no email address to verify")
        if user.email_verified:
            raise EmailState("the email address is verified already")
        await self._limit(user.id)
        await self._send_token(user, "verify", user.email)

    async def mark_verified(self, user: User) -> None:
        """The operator vouches for the address (``users create --email-verified``)."""
        await self.records.update_user(user.id, logged_at=self.clock.now(), email_verified=True)
        await self.revocations.publish([Revocation("user", user.id)])

    async def verify(self, token: Any) -> User:
        """Use a verification or address-change token: the address is (now) verified."""
        rec = await self._use(token, ("verify", "change"))
        user = await self._fresh(rec.user_id)
        if rec.purpose == "verify":
            if user.email is None or email_key(user.email) != email_key(rec.email):
                raise InvalidMailToken(reason="the address changed since the mail was sent")
            await self.records.update_user(user.id, logged_at=self.clock.now(),
                                           email_verified=True)
            self.events.emit("email.verified", user_id=user.id)
        else:
            await self.records.update_user(user.id, logged_at=self.clock.now(), email=rec.email,
                                           email_verified=True)
            await self.records.end_mail_tokens(user.id, "verify", self.clock.now())
            self.events.emit("email.changed", user_id=user.id)
        await self.revocations.publish([Revocation("user", user.id)])
        return await self._fresh(user.id)

    async def request_change(self, principal: Principal, email: Any, current_password: Any,
                             ip: str) -> None:
        """Check the password; mail a confirmation to the new address and a notice to the
        old one. The address changes when the confirmation's link is used."""
        await self._check_password(principal.user, current_password, ip)
        address = clean_email(email)
        user = await self._fresh(principal.user.id)
        if user.email and email_key(user.email) == email_key(address):
            raise EmailState("that is your address already")
        if await self.records.user_by_email(address) is not None:
            raise EmailTaken()
        await self._limit(user.id)
        notice = [Mail(to=user.email, template="change_notice",
                       context={**self._context(user), "new_email_masked": mask(address)})
                  ] if user.email else []
        await self._send_token(user, "change", address, notice)
        self.events.emit("email.change_requested", user_id=user.id, ip=ip)

    # -- forgotten password ---------------------------------------------------------------

    async def forgot(self, email: Any, ip: str) -> None:
        """A reset mail when a user has this address; the same work, answer and (near
        enough) time when none has. Throttled per client address, per email address and
        per account."""
        await self.signin.limit("forgot", ip, self.settings.registration_limit,
                                self.settings.registration_window)
        address = clean_email(email)
        key = email_key(address)
        user = await self.records.user_by_email(address)
        await self._limit(f"addr:{key}", "mailaddr")
        await self._limit(user.id if user is not None else f"addr:{key}")
        if user is None or user.disabled or user.email is None:
            await self.records.same_work(self.clock.now())
            return
        await self._send_token(user, "reset", user.email)
        self.events.emit("password.reset_requested", user_id=user.id, ip=ip)

    async def reset(self, token: Any, new_password: Any) -> None:
        """Set a new password with a reset token: every session and token family of the user
        ends (as after a password change), and so do their other reset tokens."""
        if not isinstance(new_password, str):
            raise InvalidRequest("new_password must be a string")
        rec = await self._peek(token, "reset")
        user = await self._fresh(rec.user_id)
        check_policy(new_password, min_length=self.settings.password_min_length,
                     username=user.username)  # before the token is used up
        rec = await self._use(token, ("reset",))
        await self.users.set_password(user, new_password, actor="user")
        if user.email and email_key(user.email) == email_key(rec.email) \
                and not user.email_verified:
            await self.records.update_user(user.id, logged_at=self.clock.now(),
                                           email_verified=True)  # the mail reached it
            await self.revocations.publish([Revocation("user", user.id)])
        self.events.emit("password.reset", user_id=user.id)

    # -- leaving ----------------------------------------------------------------------------

    async def delete(self, principal: Principal, current_password: Any, ip: str) -> None:
        """Delete the caller's account and everything it holds; its sessions and tokens end
        at once, on every process."""
        user = principal.user
        await self._check_password(user, current_password, ip)
        await self.revocations.everything_of(user.id)
        await self.records.delete_user(user.id, logged_at=self.clock.now())
        await self.revocations.publish([Revocation("user", user.id)])
        self.events.emit("user.deleted", user_id=user.id, ip=ip)

    # -- the parts ------------------------------------------------------------------------

    async def _send_token(self, user: User, purpose: str, to: str,
                          others: list[Mail] | None = None) -> None:
        s = self.settings.mail
        now = self.clock.now()
        ttl = s.reset_token_ttl if purpose == "reset" else s.verify_token_ttl
        token = new_secret()
        rec = MailToken(digest(token), user.id, purpose, to, now, now + ttl)
        page = "reset-password" if purpose == "reset" else "verify-email"
        context = {**self._context(user), "email": to,
                   "link": f"{self.settings.public_url}/{page}",
                   "ttl_minutes": ttl // 60, "ttl_hours": ttl // 3600,
                   "expires_at": now + ttl}  # the sender gives up on the mail after this
        mail = Mail(to=to, template=purpose, context=context,
                    secret=self.sealer.seal("mail", token))
        await self.records.queue_mail([mail, *(others or [])], now, rec, replaces=purpose)
        self.wake()
        if purpose == "verify":
            self.events.emit("email.verification_sent", user_id=user.id)

    def _context(self, user: User) -> dict[str, Any]:
        return {"username": user.username, "site_url": self.settings.public_url,
                "site": urlsplit(self.settings.public_url).netloc}

    async def _limit(self, key: str, bucket: str = "mailacct") -> None:
        """At most MAIL_LIMIT per MAIL_WINDOW for ``key`` (hashed: no address is stored in
        the throttle table). Buckets are at most 8 characters (the throttle's scope)."""
        s = self.settings.mail
        hashed = hashlib.sha256(f"{bucket}|{key}".encode()).hexdigest()
        wait = await self.signin.throttle.hit(bucket, hashed, s.limit, float(s.window))
        if wait:
            raise Throttled(int(wait), reason=f"{bucket} mail limit")

    async def _peek(self, token: Any, purpose: str) -> MailToken:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidMailToken(reason="malformed token")
        rec = await self.records.mail_token(digest(token))
        if rec is None or rec.purpose != purpose or rec.used_at is not None \
                or rec.expires_at <= self.clock.now():
            raise InvalidMailToken(reason="unknown, used or expired token")
        return rec

    async def _use(self, token: Any, purposes: tuple[str, ...]) -> MailToken:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidMailToken(reason="malformed token")
        rec = await self.records.use_mail_token(digest(token), purposes, self.clock.now())
        if rec is None:
            raise InvalidMailToken(reason="unknown, used or expired token")
        return rec

    async def _fresh(self, user_id: str) -> User:
        user = await self.records.get_user(user_id)
        if user is None or user.disabled:
            raise InvalidMailToken(reason="no such user")
        return user

    async def _check_password(self, user: User, password: Any, ip: str) -> None:
        try:
            await self.signin.check_password(user.username, password, ip, sign_in=False)
        except InvalidCredentials:
            raise WrongPassword() from None
