"""Passwords: Argon2id through argon2-cffi, off the event loop, plus the contract's policy.

* Hashing and verification run in a worker thread (argon2-cffi releases the GIL), so a login
  never stalls other requests.
* Unknown users verify against a dummy hash of the same parameters: same time, same answer.
* Hashes are self-describing PHC strings; :meth:`PasswordHasher.needs_rehash` upgrades them
  on login when the parameters change (never down to the test preset).
* ``PASSWORD_HASH_PRESET=test`` uses argon2-cffi's own cheapest parameters
  (``argon2.profiles.CHEAPEST``: 8 KiB, one pass) so test suites do not spend their time
  hashing; Settings refuse it unless PUBLIC_URL is loopback.
* Passwords are NFC-normalised (NIST SP 800-63B-4), counted in code points, never truncated.
"""

from __future__ import annotations

import asyncio
import gzip
import secrets
import unicodedata
from functools import lru_cache
from importlib.resources import files
from typing import TYPE_CHECKING

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.profiles import CHEAPEST

from authgate.errors import PolicyError

if TYPE_CHECKING:
    from authgate.setting_groups import PasswordSettings

MAX_PASSWORD_LENGTH = 1024


class PasswordHasher:
    """Argon2id with the configured parameters; every call is async and runs off the loop."""

    def __init__(self, memory_kib: int = 19456, time_cost: int = 2, parallelism: int = 1,
                 max_concurrency: int = 4, *, test_preset: bool = False) -> None:
        if test_preset:
            self._ph = argon2.PasswordHasher.from_parameters(CHEAPEST)
        else:
            self._ph = argon2.PasswordHasher(
                time_cost=time_cost,
                memory_cost=memory_kib,
                parallelism=parallelism,
                hash_len=32,
                salt_len=16,
                type=argon2.Type.ID,
            )
        self._test_preset = test_preset
        # Bounded so a login storm cannot take every thread or all memory (19 MiB each).
        self._slots = asyncio.Semaphore(max_concurrency)
        self._dummy: str | None = None

    @classmethod
    def from_settings(cls, passwords: PasswordSettings) -> PasswordHasher:
        """The hasher ``settings.passwords`` describes (its preset or its Argon2 parameters)."""
        return cls(passwords.argon2_memory_kib, passwords.argon2_time_cost,
                   passwords.argon2_parallelism, test_preset=passwords.hash_preset == "test")

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._ph.hash, normalize(password))

    async def verify(self, stored: str | None, password: str) -> bool:
        """True when ``password`` matches ``stored``; with ``stored=None`` (unknown user) runs
        the same work against a dummy hash and returns False."""
        if stored is None:
            await self._check(await self.dummy_hash(), password)
            return False
        return await self._check(stored, password)

    async def dummy_hash(self) -> str:
        """A hash with the current parameters, made once (at start-up) for unknown users."""
        if self._dummy is None:
            self._dummy = await self.hash(secrets.token_urlsafe(32))
        return self._dummy

    async def _check(self, stored: str, password: str) -> bool:
        async with self._slots:
            try:
                return await asyncio.to_thread(self._ph.verify, stored, normalize(password))
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

    def waiting(self) -> float:
        """Hash jobs waiting for a slot now (a metric)."""
        waiters = getattr(self._slots, "_waiters", None)
        return float(len(waiters)) if waiters else 0.0

    def needs_rehash(self, stored: str) -> bool:
        """Whether ``stored`` should be replaced by a hash of the current parameters: when they
        differ, except under the test preset, which never rewrites a valid Argon2 hash to
        cheaper parameters (a database brought to production upgrades on the next login)."""
        try:
            if self._test_preset:
                return argon2.extract_parameters(stored).type is not argon2.Type.ID
            return self._ph.check_needs_rehash(stored)
        except InvalidHashError:
            return True


def normalize(password: str) -> str:
    return unicodedata.normalize("NFC", password)


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    data = files("authgate").joinpath("data/common-passwords.txt.gz").read_bytes()
    return frozenset(gzip.decompress(data).decode("utf-8").split("\n"))


def check_policy(password: str, *, min_length: int, username: str = "") -> None:
    """Raise :class:`PolicyError` with the reason when ``password`` may not be used.

    Rules (NIST SP 800-63B-4 §3.1.1.2, OWASP ASVS 6.2): at least ``min_length`` and at most
    1024 code points after NFC; any characters; no composition rules; not a common or
    breached password; not the username itself.
    """
    if not isinstance(password, str):
        raise PolicyError("the password must be a string")
    if len(password) > 4 * MAX_PASSWORD_LENGTH:
        raise PolicyError(f"the password is too long: use at most {MAX_PASSWORD_LENGTH} characters")
    pw = normalize(password)
    if len(pw) < min_length:
        raise PolicyError(f"the password is too short: use at least {min_length} characters")
    if len(pw) > MAX_PASSWORD_LENGTH:
        raise PolicyError(f"the password is too long: use at most {MAX_PASSWORD_LENGTH} characters")
    folded = pw.casefold()
    if folded in _common_passwords() or folded.strip() in _common_passwords():
        raise PolicyError("the password is on a list of common or breached passwords")
    name = normalize(username).casefold()
    if name and len(name) >= 3 and name in folded and len(folded) - len(name) < min_length:
        raise PolicyError("the password must not be based on the username")
