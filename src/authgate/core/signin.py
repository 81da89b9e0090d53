"""Checking a password under the login throttle; device cookies; per-address limits."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from authgate.core.credentials import Macs, hash_for_log
from authgate.errors import EmailNotVerified, InvalidCredentials, Throttled
from authgate.events import Events
from authgate.metrics import Metrics
from authgate.models import User
from authgate.passwords import MAX_PASSWORD_LENGTH, PasswordHasher, normalize
from authgate.store.protocols import ThrottleStore
from authgate.store.records import Records, username_key
from authgate.throttle import address_key

log = logging.getLogger("authgate")
MAX_USERNAME_LENGTH = 150


@dataclass(eq=False)
class SignIn:
    records: Records
    throttle: ThrottleStore
    hasher: PasswordHasher
    events: Events
    metrics: Metrics
    macs: Macs
    require_verified: bool = False  # REQUIRE_VERIFIED_EMAIL

    async def check_password(self, username: Any, password: Any, ip: str, *,
                             device: str | None = None, sign_in: bool = True) -> User:
        """The user these credentials name, or :class:`InvalidCredentials` (the same for an
        unknown user, a wrong password and a disabled user, in the same time), or
        :class:`Throttled`. ``device``: the request's device cookie, if any.

        The attempt is counted (reserved) before the password is hashed, so parallel
        guesses cannot get past the lock; a success gives the reservation back."""
        if not isinstance(username, str) or not isinstance(password, str):
            raise InvalidCredentials()
        account = username_key(username)[:MAX_USERNAME_LENGTH] if username else ""
        found = None
        counter = None
        looked_up = False
        if (device is not None or "@" in username) and len(username) <= MAX_USERNAME_LENGTH:
            found, looked_up = await self.records.user_with_hash(username), True
            counter = self._device_counter(found[0].id, device) if found and device else None
            if found is not None:  # an address counts on its account's username
                account = username_key(found[0].username)[:MAX_USERNAME_LENGTH]
        address = address_key(ip)
        wait = await self.throttle.reserve(account, address, counter)
        if wait:
            self.events.emit("sign_in.throttled", ip=ip, level=logging.WARNING,
                             account=hash_for_log(account))
            raise Throttled(int(wait))
        if (len(password) > 4 * MAX_PASSWORD_LENGTH  # cheap bound before normalising
                or len(normalize(password)) > MAX_PASSWORD_LENGTH
                or len(username) > MAX_USERNAME_LENGTH):
            raise InvalidCredentials()
        if not looked_up:
            found = await self.records.user_with_hash(username)
        ok = await self.hasher.verify(found[1] if found else None, password)
        if not ok or found is None or found[0].disabled:
            self.events.emit("sign_in.failed", ip=ip, account=hash_for_log(account),
                             user_id=found[0].id if found else None,
                             known_device=counter is not None)
            raise InvalidCredentials()
        user, stored = found
        await self.throttle.succeeded(account, address, counter)
        if self.hasher.needs_rehash(stored):
            await self.records.set_password_hash_if(user.id, stored,
                                                    await self.hasher.hash(password))
        if sign_in and self.require_verified and not user.email_verified:
            # The password was right, so saying why tells nothing to a guesser.
            raise EmailNotVerified()
        return user

    def device_cookie(self, user_id: str) -> str:
        """A new device cookie value for a browser that just signed in as ``user_id``
        (OWASP device cookies): ``<nonce>.<HMAC(user id, nonce)>``. It authenticates
        nothing; it only gives that browser a login throttle counter of its own."""
        nonce = secrets.token_urlsafe(16)
        return f"{nonce}.{self.macs.mac('device', f'{user_id}|{nonce}')}"

    def _device_counter(self, user_id: str, value: str) -> str | None:
        """The throttle key of a device cookie that is valid for ``user_id``, else None."""
        nonce, sep, sig = value.partition(".")
        if not sep or not nonce or len(value) > 128:
            return None
        if not self.macs.check("device", f"{user_id}|{nonce}", sig):
            return None
        return hashlib.sha256(f"device|{user_id}|{nonce}".encode()).hexdigest()

    async def limit(self, bucket: str, ip: str, limit: int, window: int) -> None:
        """Per-address limit of an unauthenticated write; :class:`Throttled` when over."""
        wait = await self.throttle.hit(bucket, address_key(ip), limit, float(window))
        if wait:
            self.metrics.count("throttled", {"reg": "registration"}.get(bucket, bucket))
            log.warning("request throttled", extra={"bucket": bucket, "ip": ip})
            raise Throttled(int(wait), reason=f"{bucket} limit for this address")
