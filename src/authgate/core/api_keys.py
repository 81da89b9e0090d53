"""API keys (personal access tokens): create, list, revoke, and the principal behind one.

A key is ``ag_`` + 256 bits (base64url), shown once and stored only as its SHA-256. It
travels as ``Authorization: Bearer ag_…`` and is checked like a session: from this
process's memory once seen (no I/O per request), the record dropped here on the
``api_key:<sha-256>`` revocation the revoking process logs and publishes; a disabled or
deleted user's ``user`` revocation stops it at once. Its last use is written at most once a
minute per key, by a background flush (never on the request path).

Scopes: a key holds the scopes it was created with, a subset of its creator's; each
request gets those the user's roles still grant (a role taken away takes the scope with
it). A key never satisfies step-up (no ``amr``, no ``auth_time``) and cannot manage keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import monotonic
from typing import Any

from authgate.clock import Clock
from authgate.core.credentials import digest, new_id
from authgate.core.guessing import Uncached
from authgate.core.revocation import Revocations
from authgate.core.users import Users
from authgate.errors import (
    AuthGateError,
    InsufficientScope,
    InteractiveSignInRequired,
    InvalidRequest,
    InvalidToken,
    NotFound,
    TooManyApiKeys,
)
from authgate.events import Actor, Events
from authgate.hotstate import HotState, SingleFlight
from authgate.metrics import Metrics
from authgate.models import ApiKeyRecord, Principal, SignInEntry, User
from authgate.store.records import Records
from authgate.tasks import cancel

log = logging.getLogger("authgate")

PREFIX = "ag_"
MAX_NAME_LENGTH = 100
MAX_KEYS_PER_USER = 100
MAX_EXPIRES_IN = 10 * 366 * 86400  # ten years
TOUCH_INTERVAL = 60.0  # the stored last use lags by at most this (plus a flush)
FLUSH_INTERVAL = 5.0

RoleScopes = Callable[[tuple[str, ...], bool], tuple[str, ...]]


def new_api_key() -> str:
    """``ag_`` + 256 bits from the OS CSPRNG (base64url): 46 characters that secret
    scanners can recognise by the prefix."""
    return PREFIX + secrets.token_urlsafe(32)


def looks_like_api_key(value: str) -> bool:
    return value.startswith(PREFIX)


@dataclass(eq=False)
class ApiKeys:
    clock: Clock
    records: Records
    hot: HotState
    users: Users
    revocations: Revocations
    events: Events
    metrics: Metrics
    role_scopes: RoleScopes
    touch_interval: float = TOUCH_INTERVAL
    flush_interval: float = FLUSH_INTERVAL
    _used: dict[str, float] = field(default_factory=dict, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _reads: SingleFlight[str, ApiKeyRecord | None] = field(default_factory=SingleFlight,
                                                            init=False)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._flusher(), name="authgate-api-key-use")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        with contextlib.suppress(AuthGateError):
            await self.flush()

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
            except AuthGateError:
                pass
            except Exception:  # never let the flusher die
                log.exception("storing API keys' last use failed")

    async def flush(self) -> None:
        """Store the last uses noted since the previous flush (one transaction)."""
        if not self._used:
            return
        used, self._used = self._used, {}
        try:
            await self.records.touch_api_keys(used)
        except BaseException:
            for key_id, at in used.items():  # try again at the next flush
                self._used[key_id] = max(at, self._used.get(key_id, 0.0))
            raise

    # -- the request path -----------------------------------------------------------------

    async def principal(self, key: str, *, load: bool = True) -> Principal:
        """The principal behind an API key, or :class:`InvalidToken` (the same refusal as
        for a bad access token). Usually no I/O at all; ``load=False``: none at all
        (:class:`Uncached` when this process does not hold it)."""
        if monotonic() > self.hot.fresh_until:  # a revocation source fell silent
            await self.hot.ensure_fresh()
        if not key.startswith(PREFIX) or len(key) > 128:
            raise InvalidToken(reason="malformed API key")
        key_hash = digest(key)
        rec = self.hot.api_keys.get(key_hash)
        self.metrics.count("cache_lookups", "api_key:miss" if rec is None else "api_key:hit")
        if rec is None:
            if not load:
                raise Uncached
            rec = await self._load(key_hash)
            if rec is None:
                raise InvalidToken(reason="unknown or revoked API key")
        now = self.clock.now()
        if not rec.alive_at(now):
            raise InvalidToken(reason="expired API key")
        user = await self.users.get_user(rec.user_id)
        if user is None or user.disabled:
            raise InvalidToken(reason="user disabled or deleted")
        rec.last_used_at = now
        if now - rec.written_at >= self.touch_interval:
            rec.written_at = now
            self._used[rec.id] = now  # stored by the next flush, off the request path
        if rec.effective_for != user.roles:
            allowed = self.role_scopes(user.roles, True)
            rec.effective = tuple(s for s in rec.scopes if s in allowed)
            rec.effective_for = user.roles
        made = self.hot.api_key_principals.get(key_hash)
        if made is not None and made.api_key is rec and made.user is user \
                and made.scopes is rec.effective:
            return made
        return self.hot.api_key_principals.put(key_hash, Principal(
            user=user, auth="api_key", scopes=rec.effective, api_key=rec))

    async def _load(self, key_hash: str) -> ApiKeyRecord | None:
        """A key this process has not seen: from the database. A revocation applied while
        the read is in flight may not be in what it returns: then read again."""
        if key_hash in self.hot.no_api_key:
            return None
        return await self._reads.run(key_hash, lambda: self._read_and_cache(key_hash),
                                     self.hot.generation)

    async def _read_and_cache(self, key_hash: str) -> ApiKeyRecord | None:
        for _ in range(3):
            generation = self.hot.generation
            rec = await self.records.get_api_key(key_hash)
            if rec is None or rec.revoked_at is not None:
                self.hot.no_api_key.put(key_hash, True)
                return None
            if self.hot.generation == generation:
                self.hot.api_keys.put(key_hash, rec)
                return rec
        return rec  # revocations keep arriving: answer this request, cache nothing

    # -- management -----------------------------------------------------------------------

    async def create(self, user: User, name: Any, scopes: Any = None,
                     expires_in: Any = None, *, allowed: Sequence[str] | None = None,
                     actor: str | Actor = "user", ip: str = "", user_agent: str = ""
                     ) -> tuple[str, ApiKeyRecord]:
        """A new key for ``user``: (the key, shown once; its record). ``scopes`` (None: all
        of ``allowed``) must be a subset of ``allowed`` (default: every scope the user's
        roles grant)."""
        clean_name = _clean_name(name)
        held = tuple(allowed) if allowed is not None else self.role_scopes(user.roles, True)
        if scopes is None:
            chosen = held
        else:
            if not isinstance(scopes, list) or len(scopes) > 100 or not all(
                    isinstance(s, str) and s and len(s) <= 128 for s in scopes):
                raise InvalidRequest("scopes must be a list of scope names")
            chosen = tuple(dict.fromkeys(scopes))
            missing = [s for s in chosen if s not in held]
            if missing:
                raise InsufficientScope(f"you do not hold scope: {' '.join(missing)}")
        if expires_in is not None and (isinstance(expires_in, bool) or not isinstance(
                expires_in, int) or not 1 <= expires_in <= MAX_EXPIRES_IN):
            raise InvalidRequest(
                f"expires_in must be a number of seconds from 1 to {MAX_EXPIRES_IN}")
        now = self.clock.now()
        key = new_api_key()
        rec = ApiKeyRecord(id=new_id(), digest=digest(key), user_id=user.id, name=clean_name,
                           scopes=chosen, created_at=now,
                           expires_at=now + expires_in if expires_in is not None else None)
        if not await self.records.insert_api_key(rec, MAX_KEYS_PER_USER):
            raise TooManyApiKeys(f"at most {MAX_KEYS_PER_USER} API keys per user")
        self.events.emit("api_key.created", user_id=user.id, actor=actor, ip=ip,
                         user_agent=user_agent, key_id=rec.id, key_name=clean_name,
                         scopes=" ".join(chosen))
        return key, rec

    async def create_for_caller(self, principal: Principal, name: Any, scopes: Any = None,
                                expires_in: Any = None, *, ip: str = "",
                                user_agent: str = "") -> tuple[str, ApiKeyRecord]:
        """A key for the caller, who must have signed in (an API key cannot make keys);
        its scopes are at most the caller's own."""
        self.require_interactive(principal)
        return await self.create(principal.user, name, scopes, expires_in,
                                 allowed=principal.scopes, ip=ip, user_agent=user_agent)

    @staticmethod
    def require_interactive(principal: Principal) -> None:
        if principal.auth == "api_key":
            raise InteractiveSignInRequired()

    async def user_keys(self, user_id: str) -> list[ApiKeyRecord]:
        """The user's live keys, oldest first, with their last use as this process knows it
        (exact for the requests it served; the stored one lags by up to a minute)."""
        keys = await self.records.user_api_keys(user_id, self.clock.now())
        for rec in keys:
            cached = self.hot.api_keys.get(rec.digest)
            if cached is not None and cached.last_used_at is not None and (
                    rec.last_used_at is None or cached.last_used_at > rec.last_used_at):
                rec.last_used_at = cached.last_used_at
        return keys

    async def entries(self, user_id: str, current: str | None = None) -> list[SignInEntry]:
        """The user's keys as rows of the one sign-in list (``GET /auth/sessions``)."""
        return [SignInEntry(id=k.id, kind="api_key", created_at=k.created_at,
                            last_seen_at=k.last_used_at or k.created_at,
                            expires_at=k.expires_at, ip="", user_agent="",
                            current=k.id == current, name=k.name, scopes=k.scopes,
                            last_used_at=k.last_used_at)
                for k in await self.user_keys(user_id)]

    async def revoke(self, user_id: str, key_id: Any, *, actor: str | Actor = "user",
                     ip: str = "") -> None:
        """Revoke one of the user's keys; another user's id is :class:`NotFound` like an
        unknown one."""
        if not isinstance(key_id, str) or not key_id or len(key_id) > 64:
            raise NotFound("no such API key")
        events = await self.records.revoke_api_keys(self.clock.now(), key_id=key_id,
                                                    user_id=user_id)
        if not events:
            raise NotFound("no such API key")
        await self.revocations.publish(events)
        self.events.emit("api_key.revoked", user_id=user_id, actor=actor, ip=ip,
                         key_id=key_id)

    async def try_revoke(self, user_id: str, key_id: str, *, actor: str | Actor = "user") -> bool:
        """:meth:`revoke`, answering False instead of raising :class:`NotFound`."""
        try:
            await self.revoke(user_id, key_id, actor=actor)
        except NotFound:
            return False
        return True

    async def revoke_key(self, key: str, *, actor: str | Actor = "user") -> bool:
        """Revoke the key given as is (RFC 7009 revoke, a logout with the key, a secret
        scanner's report). False when it names no live key."""
        if not key.startswith(PREFIX) or len(key) > 128:
            return False
        now = self.clock.now()
        rec = await self.records.get_api_key(digest(key))
        if rec is None or rec.revoked_at is not None:
            return False
        events = await self.records.revoke_api_keys(now, digest=rec.digest)
        if not events:
            return False
        await self.revocations.publish(events)
        self.events.emit("api_key.revoked", user_id=rec.user_id, actor=actor, key_id=rec.id)
        return True

    async def revoke_all(self, user_id: str, *, actor: str | Actor = "operator") -> int:
        """Revoke every key of a user; how many."""
        events = await self.records.revoke_api_keys(self.clock.now(), user_id=user_id)
        await self.revocations.publish(events)
        if events:
            self.events.emit("api_key.revoked", user_id=user_id, actor=actor, key_id="*")
        return len(events)


def _clean_name(name: Any) -> str:
    if not isinstance(name, str):
        raise InvalidRequest("name must be a string")
    clean = unicodedata.normalize("NFC", name).strip()
    if not 1 <= len(clean) <= MAX_NAME_LENGTH:
        raise InvalidRequest(f"name must be 1 to {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(c).startswith("C") for c in clean):
        raise InvalidRequest("name must not contain control characters")
    return clean
