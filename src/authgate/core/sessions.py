"""Cookie sessions: log in, look up on every request, rotate, end, list, end one."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from time import monotonic
from typing import TYPE_CHECKING, Any

from authgate.clock import Clock
from authgate.core.credentials import digest, new_id, new_secret
from authgate.core.guessing import Uncached
from authgate.core.revocation import Revocations
from authgate.core.signin import SignIn
from authgate.core.users import Users
from authgate.errors import (
    InvalidCredentials,
    InvalidMfaToken,
    NotFound,
    WrongPassword,
)
from authgate.events import Actor, Events
from authgate.hotstate import HotState, SingleFlight
from authgate.metrics import Metrics
from authgate.models import Principal, SessionRecord, SignInEntry, User
from authgate.settings import Settings
from authgate.store.records import Records

if TYPE_CHECKING:
    from authgate.core.api_keys import ApiKeys
    from authgate.core.factors import Factors
    from authgate.core.passkeys import Passkeys
    from authgate.store.redis_backend import RedisBackend


#: What the id of a sign-in list entry is made of (``new_id``: hex; room for more).
ENTRY_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


@dataclass(eq=False)
class Sessions:
    settings: Settings
    clock: Clock
    records: Records
    hot: HotState
    redis: RedisBackend | None
    users: Users
    signin: SignIn
    revocations: Revocations
    events: Events
    metrics: Metrics
    factors: Factors | None = None
    api_keys: ApiKeys | None = None
    passkeys: Passkeys | None = None
    _scopes: dict[tuple[tuple[str, ...], bool], tuple[str, ...]] = field(
        default_factory=dict, init=False)
    _touch_interval: float = field(init=False)
    _touches: dict[str, float] = field(default_factory=dict, init=False)
    _reads: SingleFlight[str, SessionRecord | None] = field(default_factory=SingleFlight,
                                                             init=False)

    def __post_init__(self) -> None:
        # Other workers judge idleness from the stored last-seen, which lags by up to this
        # interval: never more than a tenth of the idle timeout.
        self._touch_interval = min(self.settings.session_touch_interval,
                                   self.settings.session_idle_ttl / 10)

    async def login(self, username: Any, password: Any, *, remember: bool = False,
                    ip: str = "", user_agent: str = "", device: str | None = None,
                    replacing: str | None = None) -> tuple[str, SessionRecord, User]:
        """Check the password and start a new session. Returns (cookie value, record, user).
        ``replacing``: the session cookie the client sent, if any; that session ends (a
        login never keeps the old ID alongside the new one). A user with an active second
        factor gets :class:`MfaRequired` (with its ``mfa_token``) instead: no session."""
        user = await self.signin.check_password(username, password, ip, device=device)
        if self.factors is not None and await self.factors.active(user.id):
            raise await self.factors.required(user, "pwd", flow="session", remember=remember)
        return await self._signed_in(user, remember, ip, user_agent, replacing, "pwd")

    async def login_mfa(self, mfa_token: Any, code: Any, *, ip: str = "",
                        user_agent: str = "", replacing: str | None = None,
                        passkey: Any = None) -> tuple[str, SessionRecord, User]:
        """Finish a login that answered ``mfa_required`` with a TOTP or recovery code, or a
        passkey assertion."""
        if self.factors is None:
            raise InvalidMfaToken()
        done = await self.factors.finish(mfa_token, code, "session", ip, passkey=passkey)
        return await self._signed_in(done.user, bool(done.data.get("remember")), ip,
                                     user_agent, replacing, done.amr)

    async def login_passkey(self, credential: Any, *, remember: bool = False, ip: str = "",
                            user_agent: str = "", replacing: str | None = None
                            ) -> tuple[str, SessionRecord, User]:
        """A passwordless sign-in with a passkey (user verification: ``… user mfa``)."""
        if self.passkeys is None:
            raise InvalidMfaToken()
        done = await self.passkeys.login(credential, ip)
        return await self._signed_in(done.user, remember, ip, user_agent, replacing,
                                     f"{done.amr} mfa")

    async def _signed_in(self, user: User, remember: bool, ip: str, user_agent: str,
                         replacing: str | None, amr: str
                         ) -> tuple[str, SessionRecord, User]:
        value, rec = await self.start_session(user, remember, ip, user_agent, amr=amr)
        self.events.emit("sign_in.succeeded", user_id=user.id, ip=ip, user_agent=user_agent,
                         method="session", session_id=rec.id, amr=amr)
        await self.end_session(replacing)
        return value, rec, user

    async def end_session(self, cookie_value: str | None) -> None:
        """End the session this cookie value names, if any."""
        if cookie_value and len(cookie_value) <= 128:
            await self.revocations.publish(await self.records.delete_sessions(
                self.clock.now(), token_hash=digest(cookie_value)))

    async def start_session(self, user: User, remember: bool = False, ip: str = "",
                            user_agent: str = "", *, amr: str = "pwd",
                            auth_time: float = 0.0) -> tuple[str, SessionRecord]:
        """A new session for ``user`` (whose credentials were checked): (cookie value,
        record). ``amr``: how (RFC 8176, space-separated); ``auth_time``: when (now)."""
        now = self.clock.now()
        s = self.settings
        value = new_secret()
        ttl = s.remember_me_ttl if remember else s.session_absolute_ttl
        rec = SessionRecord(
            id=new_id(), token_hash=digest(value), user_id=user.id,
            csrf_token=secrets.token_urlsafe(32), created_at=now, last_seen_at=now,
            expires_at=now + ttl, idle_ttl=ttl if remember else s.session_idle_ttl,
            remember=remember, ip=ip[:64], user_agent=user_agent[:512], amr=amr,
            auth_time=auth_time or now)
        evicted = await self.records.insert_session(rec, s.max_sessions_per_user, now,
                                                    self.last_seen)
        await self.revocations.publish(evicted)
        self.hot.sessions.put(rec.token_hash, rec)
        if self.redis is not None:
            await self.redis.put_session(rec, now)
        return value, rec

    async def session_principal(self, cookie_value: str, *,
                                load: bool = True) -> Principal | None:
        """The principal behind a session cookie value, or None. Usually no I/O at all;
        ``load=False``: none at all (:class:`Uncached` when this process does not hold it)."""
        if not cookie_value or len(cookie_value) > 128:
            return None
        if monotonic() > self.hot.fresh_until:  # a revocation source fell silent
            await self.hot.ensure_fresh()
        key = digest(cookie_value)
        now = self.clock.now()
        rec = self.hot.sessions.get(key)
        self.metrics.count("cache_lookups", "session:miss" if rec is None else "session:hit")
        if rec is None or not rec.alive_at(now):
            if not load:
                raise Uncached
            rec = await self._load_session(key, now, cached=rec)
            if rec is None:
                return None
        user = await self.users.get_user(rec.user_id)
        if user is None or user.disabled:
            return None
        rec.last_seen_at = now  # activity resets the idle timer, exactly, in this process
        if now - rec.written_at >= self._touch_interval:  # the database: at most this often,
            rec.written_at = now  # and off the request (write-behind: flush_touches)
            self._touches[rec.id] = now
        made = self.hot.session_principals.get(key)
        if made is not None and made.session is rec and made.user is user:
            return made  # (a record's amr never changes: a step-up is a new session)
        return self.hot.session_principals.put(key, Principal(
            user=user, auth="session",
            scopes=self.role_scopes(user.roles, "mfa" in rec.amr.split()),
            session=rec, csrf_token=rec.csrf_token, via_cookie=True))

    async def _load_session(self, key: str, now: float,
                            cached: SessionRecord | None) -> SessionRecord | None:
        """A session this process has not seen (or whose cached copy looks expired, which
        another worker's activity may have changed): Redis first, then the database; one
        read for all the requests that ask for it at once."""
        if key in self.hot.no_session:
            return None
        return await self._reads.run(key, lambda: self._read_and_cache(key, now, cached),
                                     self.hot.generation)

    async def _read_and_cache(self, key: str, now: float,
                              cached: SessionRecord | None) -> SessionRecord | None:
        from_redis = self.redis is not None and cached is None
        for _ in range(3):
            # A revocation applied while the read is in flight pops nothing (the record is
            # not cached yet): if one was applied meanwhile, read again, from the database.
            generation = self.hot.generation
            rec = await self._read_session(key, now, from_redis)
            if rec is None or self.hot.generation == generation:
                break
            from_redis = False
        else:
            return rec  # revocations keep arriving: answer this request, cache nothing
        if rec is not None:
            self.hot.sessions.put(key, rec)
        return rec

    async def _read_session(self, key: str, now: float,
                            from_redis: bool) -> SessionRecord | None:
        rec: SessionRecord | None = None
        if from_redis:
            assert self.redis is not None
            found = await self.redis.get_session(key)
            if found is False:  # revoked
                self.hot.no_session.put(key, True)
                return None
            if isinstance(found, SessionRecord) and found.alive_at(now):
                rec = found
        if rec is None:
            rec = await self.records.get_session(key)
            if rec is None:
                self.hot.no_session.put(key, True)
                self.hot.sessions.pop(key)
                return None
            if rec.alive_at(now) and self.redis is not None:
                await self.redis.put_session(rec, now)
        if not rec.alive_at(now):  # expired: purge it now rather than at the next sweep
            self.hot.sessions.pop(key)
            self.hot.no_session.put(key, True)
            await self.records.delete_sessions(now, session_id=rec.id)
            return None
        return rec

    async def logout(self, principal: Principal) -> None:
        """End the caller's session, or (a token) its access token and token family."""
        if principal.session is not None:
            await self.revocations.publish(await self.records.delete_sessions(
                self.clock.now(), session_id=principal.session.id))
        elif principal.claims is not None:
            await self.revocations.access_token(principal.claims, family=True)
        elif principal.api_key is not None and self.api_keys is not None:
            # A logout with an API key ends the credential presented, as a token's does.
            await self.api_keys.try_revoke(principal.user.id, principal.api_key.id)
        self.events.emit("sign_out", user_id=principal.user.id,
                         session_id=principal.session.id if principal.session else None,
                         family_id=principal.claims.get("sid") if principal.claims else None)

    async def rotate_session(self, principal: Principal, ip: str = "",
                             user_agent: str = "") -> tuple[str, SessionRecord] | None:
        """A fresh ID for the caller's session (after re-authentication); the old one ends."""
        if principal.session is None:
            return None
        old = principal.session
        value, rec = await self.start_session(principal.user, old.remember, ip or old.ip,
                                             user_agent or old.user_agent, amr=old.amr,
                                             auth_time=old.auth_time)
        await self.revocations.publish(await self.records.delete_sessions(
            self.clock.now(), session_id=old.id))
        return value, rec

    async def change_password(self, principal: Principal, current: Any, new: Any,
                              ip: str) -> tuple[str, SessionRecord] | None:
        """Check ``current`` (throttled like a login), set ``new``, end every other session and
        family, and rotate the caller's own session ID."""
        user = principal.user
        try:
            await self.signin.check_password(user.username, current, ip, sign_in=False)
        except InvalidCredentials:
            raise WrongPassword() from None
        family = principal.claims.get("sid") if principal.claims else None
        await self.users.set_password(user, new, keep_session=principal.session.id
                                      if principal.session else None, keep_family=family)
        return await self.rotate_session(principal, ip)

    async def sign_ins(self, principal: Principal | User) -> list[SignInEntry]:
        """The sessions, token families and API keys of the caller (a principal: its own
        entry is ``current``) or of a user (an admin's view), oldest first."""
        await self.flush_touches()  # the stored last-seen decides which are alive
        now = self.clock.now()
        user, current_session, current_family = _whose(principal)
        entries = [
            SignInEntry(id=s.id, kind="session", created_at=s.created_at,
                        last_seen_at=s.last_seen_at, expires_at=s.deadline(), ip=s.ip,
                        user_agent=s.user_agent, current=s.id == current_session)
            for s in await self.records.user_sessions(user.id, now)]
        entries += [
            SignInEntry(id=f.id, kind="token", created_at=f.created_at,
                        last_seen_at=f.last_seen_at, expires_at=f.expires_at, ip=f.ip,
                        user_agent=f.user_agent, current=f.id == current_family)
            for f in await self.records.user_families(user.id, now)]
        if self.api_keys is not None:
            current_key = principal.api_key.id if isinstance(principal, Principal) \
                and principal.api_key else None
            entries += await self.api_keys.entries(user.id, current_key)
        entries.sort(key=lambda e: e.created_at)
        return entries

    async def revoke_sign_in(self, principal: Principal | User, entry_id: str, *,
                             actor: str | Actor = "user") -> None:
        """End one of the sessions, token families or API keys of the caller (or of a user:
        an admin); another user's id is :class:`NotFound` like an unknown one."""
        if not isinstance(entry_id, str) or len(entry_id) > 64 \
                or not set(entry_id) <= ENTRY_ID_CHARS:
            raise NotFound()  # (never sent to the database: PostgreSQL refuses a NUL)
        now = self.clock.now()
        uid = _whose(principal)[0].id
        events = await self.records.delete_sessions(now, session_id=entry_id, user_id=uid)
        if not events:
            events = await self.records.revoke_families(now, family_id=entry_id, user_id=uid)
        if not events and self.api_keys is not None and await self.api_keys.try_revoke(
                uid, entry_id, actor=actor):  # it publishes and emits its own event
            return
        if not events:
            raise NotFound("no such session")
        await self.revocations.publish(events)
        self.events.emit("session.revoked", user_id=uid, entry_id=entry_id, actor=actor)

    async def logout_everywhere(self, user: User, *, actor: str | Actor = "user") -> None:
        await self.revocations.everything_of(user.id)
        self.events.emit("sign_out.everywhere", user_id=user.id, actor=actor)

    async def flush_touches(self) -> int:
        """Write the last-seen times requests queued since the last flush, in one batch (the
        engine calls this every second and at stop). A failed write keeps them queued."""
        if not self._touches:
            return 0
        batch, self._touches = self._touches, {}
        try:
            await self.records.touch_sessions(batch)
        except BaseException:
            for sid, at in batch.items():
                self._touches[sid] = max(at, self._touches.get(sid, at))
            raise
        return len(batch)

    def last_seen(self, token_hash: str) -> float | None:
        """A session's last use as this process knows it: exact for the sessions it serves,
        where the stored last_seen_at lags by up to the touch interval."""
        rec = self.hot.sessions.get(token_hash)
        return rec.last_seen_at if rec is not None else None

    def role_scopes(self, roles: tuple[str, ...], mfa: bool = True) -> tuple[str, ...]:
        """The scopes of ``roles`` (without ``mfa``: not those of MFA_REQUIRED_ROLES)."""
        scopes = self._scopes.get((roles, mfa))
        if scopes is None:
            scopes = self._scopes[roles, mfa] = tuple(self.settings.scopes_for(list(roles),
                                                                               mfa))
        return scopes


def _whose(who: Principal | User) -> tuple[User, str | None, str | None]:
    """(the user, the caller's session id, the caller's token family id)."""
    if isinstance(who, User):
        return who, None, None
    return (who.user, who.session.id if who.session else None,
            who.claims.get("sid") if who.claims else None)
