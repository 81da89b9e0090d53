"""The engine: users, passwords, sessions, tokens and revocation. No web framework here.

:class:`Engine` is the one composition root. The HTTP app, the FastAPI/Starlette adapters,
the CLI and the pages only call it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import inspect
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from authgate.clock import Clock, SystemClock
from authgate.errors import (
    AuthGateError,
    BackendUnavailable,
    CsrfError,
    InsufficientScope,
    InvalidCredentials,
    InvalidGrant,
    InvalidToken,
    NotFound,
    RegistrationClosed,
    Throttled,
    WrongPassword,
)
from authgate.events import Events, Hook
from authgate.hotstate import HotState
from authgate.keys import KeyRing
from authgate.localbus import PgNotifyBus, SocketBus
from authgate.metrics import Metrics
from authgate.models import Principal, SessionRecord, SignInEntry, TokenFamily, TokenPair, User
from authgate.passwords import MAX_PASSWORD_LENGTH, PasswordHasher, check_policy, normalize
from authgate.settings import Settings, check_extra_claims
from authgate.store import schema as t
from authgate.store.audit import AuditRecords
from authgate.store.db import Database
from authgate.store.records import Records, username_key
from authgate.tasks import cancel
from authgate.throttle import DbThrottle, ThrottleStore, address_key
from authgate.tokens import AccessTokens
from authgate.webhooks import WebhookSender

if TYPE_CHECKING:
    from authgate.redis import RedisBackend

log = logging.getLogger("authgate")

ExtraClaims = Callable[[User], dict[str, Any] | Awaitable[dict[str, Any]]]
MAX_USERNAME_LENGTH = 150


def digest(secret: str) -> str:
    """SHA-256 of a 256-bit random credential, as stored (hex)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_secret() -> str:
    """256 bits from the OS CSPRNG, base64url (43 characters)."""
    return secrets.token_urlsafe(32)


def _new_id() -> str:
    return uuid.uuid4().hex


def _hash_for_log(value: str) -> str:
    return hashlib.sha256(b"log:" + value.encode()).hexdigest()[:12]


class Engine:
    """Everything authgate does, over a database and in-process hot state."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None,
                 extra_claims: ExtraClaims | None = None,
                 throttle: ThrottleStore | None = None,
                 on_event: Hook | None = None) -> None:
        self.settings = settings
        self.clock = clock if clock is not None else SystemClock()
        self.extra_claims = extra_claims
        self.db = Database(settings.database_url)
        self.records = Records(self.db)
        self.audit = AuditRecords(self.db)
        self.metrics = Metrics()
        self.events = Events(self.audit, self.clock, webhooks=bool(settings.webhook_url),
                             hooks=[on_event] if on_event else [],
                             counters=self.metrics.event)
        self._outbox_pending = 0
        self.webhooks = (WebhookSender(self.audit, settings.webhook_url,
                                       settings.webhook_secret.get_secret_value(), self.clock)
                         if settings.webhook_url and settings.webhook_secret else None)
        self.hasher = PasswordHasher.from_settings(settings.passwords)
        secret = settings.hs256_secret.get_secret_value().encode() if settings.hs256_secret \
            else None
        self.keys = KeyRing(self.records, settings.signing_alg, settings.signing_key_file,
                            secret)
        self.tokens = AccessTokens(self.keys, settings.token_issuer, settings.audience,
                                   settings.access_token_ttl, settings.token_leeway)
        self.hot = HotState(self.records, self.clock, settings.revocation_poll_interval)
        self._gauges()
        # Between processes without Redis, in milliseconds (the log stays the backstop).
        self.socket_bus: SocketBus | None = None
        self.notify_bus: PgNotifyBus | None = None
        delay = self.metrics.revocation_delay.observe
        if self.db.sqlite_path is not None:
            self.socket_bus = SocketBus(self.db.sqlite_path, self.hot.apply, delay)
        elif not self.db.is_sqlite:
            self.notify_bus = PgNotifyBus(self.db.driver_url, self.hot.apply, delay)
        self.redis: RedisBackend | None = None
        if settings.redis_url:
            from authgate.redis import RedisBackend, RedisThrottle

            self.redis = RedisBackend(settings.redis_url, self.hot, self.clock,
                                      settings.redis_prefix)
            if throttle is None:
                throttle = RedisThrottle(self.redis.client, self.clock,
                                         settings.account_lock_threshold,
                                         settings.ip_failure_limit, settings.ip_failure_window,
                                         settings.redis_prefix)
        self.throttle: ThrottleStore = throttle or DbThrottle(
            self.db, self.clock, settings.account_lock_threshold, settings.ip_failure_limit,
            settings.ip_failure_window)
        self._csrf_key = b""
        self._keys_loaded_at = 0.0
        self.cookie_names = (settings.session_cookie, settings.access_cookie)
        self._scopes: dict[tuple[str, ...], tuple[str, ...]] = {}
        # Other workers judge idleness from the stored last-seen, which lags by up to this
        # interval: never more than a tenth of the idle timeout.
        self._touch_interval = min(settings.session_touch_interval,
                                   settings.session_idle_ttl / 10)
        self._started = False
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, *, migrate: bool = True) -> None:
        if self._started:
            return
        if migrate:
            await self.db.migrate()
        now = self.clock.now()
        await self.keys.load(now)
        self._csrf_key = bytes.fromhex(
            await self.records.server_secret("csrf", secrets.token_hex(32)))
        await self.hasher.dummy_hash()
        await self.hot.start(self.settings.access_token_ttl)
        if self.redis is not None:
            await self.redis.start()
        if self.socket_bus is not None:
            self.socket_bus.start()
        if self.notify_bus is not None:
            self.notify_bus.start()
        if self.extra_claims is not None:
            probe = await self._extra_claims(User(id="probe", username="probe"))
            check_extra_claims(set(probe))
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="authgate-purge"))
        self.events.start()
        if self.webhooks is not None:
            self.webhooks.start()
        self._started = True

    async def stop(self) -> None:
        await cancel(*self._tasks)
        self._tasks.clear()
        await self.events.stop()
        if self.webhooks is not None:
            await self.webhooks.stop()
        await self.hot.stop()
        if self.redis is not None:
            await self.redis.stop()
        if self.socket_bus is not None:
            self.socket_bus.stop()
        if self.notify_bus is not None:
            await self.notify_bus.stop()
        await self.db.close()
        self._started = False

    async def _housekeeping(self) -> None:
        """Reload keys every 30 s (a rotation made elsewhere shows up in the JWKS well before
        the new key signs); purge expired records every 5 minutes."""
        rounds = 0
        while True:
            await asyncio.sleep(30)
            rounds += 1
            try:
                await self._load_keys()
                if rounds % 10 == 0:
                    await self.purge()
            except AuthGateError:
                pass
            except Exception:
                log.exception("housekeeping failed")

    async def _reload_keys_for(self, token: str) -> bool:
        """A token names a key this process does not know (another instance rotated, or
        generated it first): reload keys, at most every 5 s. True when reloaded."""
        now = time.monotonic()
        if now - self._keys_loaded_at < 5:
            return False
        self._keys_loaded_at = now
        return await self._load_keys()

    async def _load_keys(self) -> bool:
        """Reload the key ring; True when its set of keys changed. A key that left the ring
        takes the verified-token cache with it: its tokens must not outlive it there."""
        before = set(self.keys.keys)
        await self.keys.load(self.clock.now(), create=False)
        after = set(self.keys.keys)
        if before - after:
            self.hot.verified.clear()
        return after != before

    async def purge(self) -> dict[str, int]:
        """Delete expired sessions, refresh tokens and denylist entries."""
        counts = await self.records.purge(self.clock.now())
        counts["throttle"] = await self.throttle.purge()
        counts["audit_events"] = await self.audit.purge(
            self.clock.now() - self.settings.audit_retention_days * 86400)
        self.hot.sessions.expire(lambda s: not s.alive_at(self.clock.now()))
        return counts

    # -- users ----------------------------------------------------------------------------

    async def create_user(self, username: str, password: str, roles: list[str] | None = None,
                          *, check: bool = True, actor: str = "operator") -> User:
        username = _clean_username(username)
        if check:
            check_policy(password, min_length=self.settings.password_min_length,
                         username=username)
        user = User(id=_new_id(), username=username, roles=tuple(roles or ()),
                    created_at=self.clock.now())
        created = await self.records.create_user(user, await self.hasher.hash(password))
        self.events.emit("user.created", user_id=user.id, actor=actor)
        return created

    async def register(self, username: str, password: str, *, ip: str | None = None) -> User:
        """Open registration. ``ip``: the client's address, limited to
        ``REGISTRATION_LIMIT`` per ``REGISTRATION_WINDOW`` (None: not from the network)."""
        if not self.settings.open_registration:
            raise RegistrationClosed()
        if ip is not None:
            await self._limit("reg", ip, self.settings.registration_limit,
                              self.settings.registration_window)
        return await self.create_user(username, password, actor="user")

    async def get_user(self, user_id: str) -> User | None:
        cached = self.hot.users.get(user_id)
        if cached is not None:
            return cached
        generation = self.hot.generation
        user = await self.records.get_user(user_id)
        if user is not None and self.hot.generation == generation:  # see _load_session
            self.hot.users.put(user_id, user)
        return user

    async def user_by_name(self, username: str) -> User | None:
        found = await self.records.user_with_hash(username)
        return found[0] if found else None

    async def set_disabled(self, user: User, disabled: bool) -> None:
        """Disable (ending every session, token family and access token) or enable."""
        now = self.clock.now()
        if disabled:
            await self._revoke_everything(user.id, now, disabled=True)
        else:
            await self.records.update_user(user.id, disabled=False)
            await self._apply([f"user:{user.id}"])
        self.events.emit("user.disabled" if disabled else "user.enabled", user_id=user.id,
                         actor="operator")

    async def set_password(self, user: User, password: str, *, keep_session: str | None = None,
                           keep_family: str | None = None) -> None:
        """Set a new password and end every other session and token family."""
        check_policy(password, min_length=self.settings.password_min_length,
                     username=user.username)
        new_hash = await self.hasher.hash(password)
        now = self.clock.now()
        await self.records.update_user(user.id, password_hash=new_hash)
        keys = await self.records.delete_sessions(sa.and_(
            t.sessions.c.user_id == user.id,
            t.sessions.c.id != (keep_session or "")), now)
        keys += await self.records.revoke_families(sa.and_(
            t.token_families.c.user_id == user.id,
            t.token_families.c.id != (keep_family or "")), now)
        await self._apply([*keys, f"user:{user.id}"])
        self.events.emit("password.changed", user_id=user.id,
                         actor="user" if keep_session or keep_family else "operator")

    async def set_roles(self, user: User, roles: list[str]) -> None:
        """Set the user's roles to exactly ``roles``. Their access tokens issued before end
        (the scopes in them came from the old roles); sessions, whose scopes come from the
        user's current roles, see the change on every process within the revocation bound;
        a refresh derives its scope from the new roles."""
        clean = tuple(dict.fromkeys(r.strip() for r in roles))
        if any(not r or len(r) > 64 or any(c.isspace() for c in r) for r in clean):
            from authgate.errors import InvalidRequest

            raise InvalidRequest("a role is 1 to 64 characters without spaces")
        now = self.clock.now()
        # Whole seconds as for a password change; a token of this very second carrying the
        # old roles is refused by token_principal's roles check.
        await self.records.cut_off_user(user.id, float(int(now)), roles=clean)
        await self._apply([f"user:{user.id}"])
        self.events.emit("user.roles_changed", user_id=user.id, actor="operator",
                         roles=",".join(roles))

    async def _revoke_everything(self, user_id: str, now: float, **user_values: Any) -> None:
        keys = await self.records.delete_sessions(t.sessions.c.user_id == user_id, now)
        keys += await self.records.revoke_families(t.token_families.c.user_id == user_id, now)
        # Whole seconds: access tokens issued in an earlier second are refused by the
        # cutoff; those of this very second are covered by their family's revocation.
        await self.records.cut_off_user(user_id, float(int(now)), **user_values)
        await self._apply([*keys, f"user:{user_id}"])

    # -- passwords and throttling ---------------------------------------------------------

    async def check_password(self, username: Any, password: Any, ip: str, *,
                             device: str | None = None) -> User:
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
        if device is not None and len(username) <= MAX_USERNAME_LENGTH:
            found = await self.records.user_with_hash(username)
            counter = self._device_counter(found[0].id, device) if found else None
        address = address_key(ip)
        wait = await self.throttle.reserve(account, address, counter)
        if wait:
            self.events.emit("sign_in.throttled", ip=ip, level=logging.WARNING,
                             account=_hash_for_log(account))
            raise Throttled(int(wait))
        if (len(password) > 4 * MAX_PASSWORD_LENGTH  # cheap bound before normalising
                or len(normalize(password)) > MAX_PASSWORD_LENGTH
                or len(username) > MAX_USERNAME_LENGTH):
            raise InvalidCredentials()
        if counter is None:
            found = await self.records.user_with_hash(username)
        ok = await self.hasher.verify(found[1] if found else None, password)
        if not ok or found is None or found[0].disabled:
            self.events.emit("sign_in.failed", ip=ip, account=_hash_for_log(account),
                             user_id=found[0].id if found else None,
                             known_device=counter is not None)
            raise InvalidCredentials()
        user, stored = found
        await self.throttle.succeeded(account, address, counter)
        if self.hasher.needs_rehash(stored):
            await self.records.set_password_hash_if(user.id, stored,
                                                    await self.hasher.hash(password))
        return user

    def device_cookie(self, user_id: str) -> str:
        """A new device cookie value for a browser that just signed in as ``user_id``
        (OWASP device cookies): ``<nonce>.<HMAC(user id, nonce)>``. It authenticates
        nothing; it only gives that browser a login throttle counter of its own."""
        nonce = secrets.token_urlsafe(16)
        return f"{nonce}.{self.mac('device', f'{user_id}|{nonce}')}"

    def _device_counter(self, user_id: str, value: str) -> str | None:
        """The throttle key of a device cookie that is valid for ``user_id``, else None."""
        nonce, sep, sig = value.partition(".")
        if not sep or not nonce or len(value) > 128:
            return None
        expected = self.mac("device", f"{user_id}|{nonce}")
        if not hmac.compare_digest(sig.encode(), expected.encode()):
            return None
        return hashlib.sha256(f"device|{user_id}|{nonce}".encode()).hexdigest()

    async def _limit(self, bucket: str, ip: str, limit: int, window: int) -> None:
        """Per-address limit of an unauthenticated write; :class:`Throttled` when over."""
        wait = await self.throttle.hit(bucket, address_key(ip), limit, float(window))
        if wait:
            self.metrics.count("throttled", {"reg": "registration"}.get(bucket, bucket))
            log.warning("request throttled", extra={"bucket": bucket, "ip": ip})
            raise Throttled(int(wait), reason=f"{bucket} limit for this address")

    # -- sessions -------------------------------------------------------------------------

    async def login(self, username: Any, password: Any, *, remember: bool = False,
                    ip: str = "", user_agent: str = "",
                    device: str | None = None) -> tuple[str, SessionRecord, User]:
        """Check the password and start a new session. Returns (cookie value, record, user).
        Any session ID the client sent before is ignored: a new one is always made."""
        user = await self.check_password(username, password, ip, device=device)
        value, rec = await self._new_session(user, remember, ip, user_agent)
        self.events.emit("sign_in.succeeded", user_id=user.id, ip=ip, user_agent=user_agent,
                         method="session", session_id=rec.id)
        return value, rec, user

    async def end_session(self, cookie_value: str | None) -> None:
        """End the session this cookie value names, if any (a new login replaces it: the
        old ID is destroyed, never kept alongside)."""
        if cookie_value and len(cookie_value) <= 128:
            await self._apply(await self.records.delete_sessions(
                t.sessions.c.token_hash == digest(cookie_value), self.clock.now()))

    async def _new_session(self, user: User, remember: bool, ip: str,
                           user_agent: str) -> tuple[str, SessionRecord]:
        now = self.clock.now()
        s = self.settings
        value = new_secret()
        ttl = s.remember_me_ttl if remember else s.session_absolute_ttl
        rec = SessionRecord(
            id=_new_id(), token_hash=digest(value), user_id=user.id,
            csrf_token=secrets.token_urlsafe(32), created_at=now, last_seen_at=now,
            expires_at=now + ttl, idle_ttl=ttl if remember else s.session_idle_ttl,
            remember=remember, ip=ip[:64], user_agent=user_agent[:512])
        evicted = await self.records.insert_session(rec, s.max_sessions_per_user, now,
                                                    self._last_seen)
        await self._apply(evicted)
        self.hot.sessions.put(rec.token_hash, rec)
        if self.redis is not None:
            await self.redis.put_session(rec, now)
        return value, rec

    async def session_principal(self, cookie_value: str) -> Principal | None:
        """The principal behind a session cookie value, or None. Usually no I/O at all."""
        if not cookie_value or len(cookie_value) > 128:
            return None
        await self.hot.ensure_fresh()
        key = digest(cookie_value)
        now = self.clock.now()
        rec = self.hot.sessions.get(key)
        self.metrics.count("cache_lookups", "session:miss" if rec is None else "session:hit")
        if rec is None or not rec.alive_at(now):
            rec = await self._load_session(key, now, cached=rec)
            if rec is None:
                return None
        user = await self.get_user(rec.user_id)
        if user is None or user.disabled:
            return None
        rec.last_seen_at = now  # activity resets the idle timer, exactly, in this process
        if now - rec.written_at >= self._touch_interval:  # the database: at most this often
            rec.written_at = now
            await self.records.touch_session(rec.id, now)
        return Principal(user=user, auth="session", scopes=self._role_scopes(user.roles),
                         session=rec, csrf_token=rec.csrf_token, via_cookie=True)

    async def _load_session(self, key: str, now: float,
                            cached: SessionRecord | None) -> SessionRecord | None:
        """A session this process has not seen (or whose cached copy looks expired, which
        another worker's activity may have changed): Redis first, then the database."""
        if key in self.hot.no_session:
            return None
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
            await self.records.delete_sessions(t.sessions.c.id == rec.id, now)
            return None
        return rec

    async def logout(self, principal: Principal) -> None:
        if principal.session is not None:
            keys = await self.records.delete_sessions(
                t.sessions.c.id == principal.session.id, self.clock.now())
            await self._apply(keys)
        elif principal.claims is not None:
            await self._revoke_access(principal.claims, family=True)
        self.events.emit("sign_out", user_id=principal.user.id,
                         session_id=principal.session.id if principal.session else None,
                         family_id=principal.claims.get("sid") if principal.claims else None)

    async def rotate_session(self, principal: Principal, ip: str = "",
                             user_agent: str = "") -> tuple[str, SessionRecord] | None:
        """A fresh ID for the caller's session (after re-authentication); the old one ends."""
        if principal.session is None:
            return None
        old = principal.session
        value, rec = await self._new_session(principal.user, old.remember, ip or old.ip,
                                             user_agent or old.user_agent)
        await self._apply(await self.records.delete_sessions(t.sessions.c.id == old.id,
                                                       self.clock.now()))
        return value, rec

    async def change_password(self, principal: Principal, current: Any, new: Any,
                              ip: str) -> tuple[str, SessionRecord] | None:
        """Check ``current`` (throttled like a login), set ``new``, end every other session and
        family, and rotate the caller's own session ID."""
        user = principal.user
        try:
            await self.check_password(user.username, current, ip)
        except InvalidCredentials:
            raise WrongPassword() from None
        family = principal.claims.get("sid") if principal.claims else None
        await self.set_password(user, new, keep_session=principal.session.id
                                if principal.session else None, keep_family=family)
        return await self.rotate_session(principal, ip)

    async def sign_ins(self, principal: Principal) -> list[SignInEntry]:
        now = self.clock.now()
        current_session = principal.session.id if principal.session else None
        current_family = principal.claims.get("sid") if principal.claims else None
        entries = [
            SignInEntry(id=s.id, kind="session", created_at=s.created_at,
                        last_seen_at=s.last_seen_at, expires_at=s.deadline(), ip=s.ip,
                        user_agent=s.user_agent, current=s.id == current_session)
            for s in await self.records.user_sessions(principal.user.id, now)]
        entries += [
            SignInEntry(id=f.id, kind="token", created_at=f.created_at,
                        last_seen_at=f.last_seen_at, expires_at=f.expires_at, ip=f.ip,
                        user_agent=f.user_agent, current=f.id == current_family)
            for f in await self.records.user_families(principal.user.id, now)]
        entries.sort(key=lambda e: e.created_at)
        return entries

    async def revoke_sign_in(self, principal: Principal, entry_id: str) -> None:
        """End one of the caller's own sessions or token families; another user's id is
        :class:`NotFound` like an unknown one."""
        if not isinstance(entry_id, str) or len(entry_id) > 64:
            raise NotFound()
        now = self.clock.now()
        uid = principal.user.id
        keys = await self.records.delete_sessions(sa.and_(
            t.sessions.c.id == entry_id, t.sessions.c.user_id == uid), now)
        if not keys:
            keys = await self.records.revoke_families(sa.and_(
                t.token_families.c.id == entry_id, t.token_families.c.user_id == uid), now)
        if not keys:
            raise NotFound("no such session")
        await self._apply(keys)
        self.events.emit("session.revoked", user_id=uid, entry_id=entry_id)

    async def logout_everywhere(self, user: User) -> None:
        await self._revoke_everything(user.id, self.clock.now())
        self.events.emit("sign_out.everywhere", user_id=user.id)

    # -- tokens ---------------------------------------------------------------------------

    async def password_grant(self, username: Any, password: Any, scope: Any = None, *,
                             ip: str = "", user_agent: str = "",
                             device: str | None = None) -> TokenPair:
        user = await self.check_password(username, password, ip, device=device)
        granted = self._grant_scope(user, scope)
        now = self.clock.now()
        s = self.settings
        fam = TokenFamily(id=_new_id(), user_id=user.id, scope=granted, created_at=now,
                          last_seen_at=now, expires_at=now + s.refresh_token_ttl,
                          ip=ip[:64], user_agent=user_agent[:512])
        refresh = new_secret()
        evicted = await self.records.create_family(fam, digest(refresh), fam.expires_at,
                                                   s.max_sessions_per_user, now,
                                                   self._last_seen)
        await self._apply(evicted)
        self.events.emit("sign_in.succeeded", user_id=user.id, ip=ip, user_agent=user_agent,
                         method="token", family_id=fam.id)
        return await self._pair(user, fam, refresh, now)

    async def refresh_grant(self, refresh_token: Any, *, ip: str = "",
                            csrf: str | None = None) -> TokenPair:
        """Rotate a refresh token. With ``csrf`` (the token came from a cookie) that value
        must be the family's CSRF value."""
        if not isinstance(refresh_token, str) or not 20 <= len(refresh_token) <= 128:
            raise InvalidGrant()
        now = self.clock.now()
        grace = self.settings.refresh_reuse_grace
        if csrf is not None:
            fam = await self.records.refresh_family(digest(refresh_token))
            # A family that is gone or revoked is a grant to sign in again, not a CSRF
            # failure: the client's CSRF handling is not what is wrong.
            if fam is None or fam.revoked_at is not None or now >= fam.expires_at:
                raise InvalidGrant()
            if not hmac.compare_digest(csrf.encode(), self.token_csrf(fam.id).encode()):
                raise CsrfError()
            # Two tabs of one browser refresh with the same cookie: the loser gets a
            # sibling instead of revoking the family (the cookie jar keeps one of them).
            grace = max(grace, self.settings.cookie_refresh_reuse_grace)
        new = new_secret()
        outcome, fam = await self.records.rotate_refresh(
            digest(refresh_token), digest(new), now, grace, self.settings.refresh_idle_ttl)
        if outcome == "reuse" and fam is not None:
            await self._apply([f"family:{fam.id}"])
            self.events.emit("refresh.reuse_detected", user_id=fam.user_id, ip=ip,
                             level=logging.WARNING, family_id=fam.id)
            raise InvalidGrant("the refresh token was already used")
        if outcome != "ok" or fam is None:
            self.metrics.count("refreshes", "invalid")
            raise InvalidGrant()
        self.metrics.count("refreshes", "rotated")
        generation = self.hot.generation
        user = await self.records.get_user(fam.user_id)
        if user is None or user.disabled:
            raise InvalidGrant()
        if self.hot.generation == generation:
            self.hot.users.put(user.id, user)
        # Scopes are re-derived from the user's current roles (a downgrade takes effect);
        # a refresh never widens: an empty grant stays empty (not "everything allowed").
        scope = self._grant_scope(user, fam.scope) if fam.scope else ""
        return await self._pair(user, fam, new, now, scope)

    async def _pair(self, user: User, fam: TokenFamily, refresh: str, now: float,
                    scope: str | None = None) -> TokenPair:
        extra = await self._extra_claims(user) if self.extra_claims else None
        granted = fam.scope if scope is None else scope
        token, claims = self.tokens.issue(sub=user.id, scope=granted, roles=list(user.roles),
                                          family_id=fam.id, now=now, extra=extra)
        self.metrics.count("tokens_issued")
        return TokenPair(access_token=token, expires_in=self.settings.access_token_ttl,
                         refresh_token=refresh, scope=granted, family_id=fam.id, claims=claims)

    async def _extra_claims(self, user: User) -> dict[str, Any]:
        assert self.extra_claims is not None
        value = self.extra_claims(user)
        if inspect.isawaitable(value):
            value = await value
        return dict(value)

    def _grant_scope(self, user: User, requested: Any) -> str:
        allowed = self.settings.scopes_for(list(user.roles))
        if requested is None or requested == "":
            return " ".join(allowed)
        if not isinstance(requested, str):
            raise InvalidGrant("scope must be a space-separated string")
        return " ".join(s for s in dict.fromkeys(requested.split()) if s in allowed)

    async def token_principal(self, token: str, *, via_cookie: bool = False) -> Principal:
        """Verify an access token and check it is not revoked. Raises :class:`InvalidToken`.
        A token verified before is not verified again until its ``exp``; the revocation
        checks run every time, from memory."""
        await self.hot.ensure_fresh()
        now = self.clock.now()
        claims = self.hot.verified.get(token)
        self.metrics.count("cache_lookups", "token:miss" if claims is None else "token:hit")
        if claims is None or now >= claims["exp"] + self.settings.token_leeway:
            try:
                claims = self.tokens.verify(token, now)
            except InvalidToken:
                if not await self._reload_keys_for(token):
                    raise
                claims = self.tokens.verify(token, now)
            self.hot.verified.put(token, claims)
        if claims["jti"] in self.hot.denied_jtis or claims.get("sid") in \
                self.hot.revoked_families:
            raise InvalidToken(reason="revoked")
        user = await self.get_user(claims["sub"])
        if user is None or user.disabled:
            raise InvalidToken(reason="user disabled or deleted")
        if claims["iat"] < user.tokens_valid_after:
            raise InvalidToken(reason="issued before the user's cutoff")
        if tuple(claims.get("roles") or ()) != user.roles:  # issued before a role change
            raise InvalidToken(reason="roles changed")
        scopes = tuple(claims.get("scope", "").split())
        csrf = self.token_csrf(claims.get("sid") or claims["jti"]) if via_cookie else None
        return Principal(user=user, auth="token", scopes=scopes, claims=claims,
                         csrf_token=csrf, via_cookie=via_cookie)

    def token_csrf(self, family_id: str) -> str:
        """The CSRF value of a token family whose tokens travel in cookies: an HMAC of the
        family id under a server secret, so it is checked with no server state and stays the
        same across refreshes."""
        return self.mac("at-csrf", family_id)

    def mac(self, purpose: str, value: str) -> str:
        """HMAC-SHA256 under the server's stored secret, base64url (192 bits)."""
        msg = f"{purpose}:{value}".encode()
        return base64.urlsafe_b64encode(
            hmac.new(self._csrf_key, msg, hashlib.sha256).digest()[:24]).decode()

    async def revoke_token(self, token: Any, *, ip: str | None = None) -> None:
        """RFC 7009: revoke a refresh token (its family and that family's access tokens) or
        an access token (its ``jti``). Unknown or invalid tokens are silently ignored.
        ``ip``: the client's address, limited to ``REVOKE_LIMIT`` per ``REVOKE_WINDOW``."""
        if ip is not None:
            await self._limit("rev", ip, self.settings.revoke_limit,
                              self.settings.revoke_window)
        if not isinstance(token, str) or not token or len(token) > 8192:
            return
        now = self.clock.now()
        if "." not in token:
            fam = await self.records.refresh_family(digest(token))
            if fam is not None:
                await self._apply(await self.records.revoke_families(
                    t.token_families.c.id == fam.id, now))
                self.events.emit("family.revoked", user_id=fam.user_id, family_id=fam.id)
            return
        try:
            claims = self.tokens.verify(token, now)
        except InvalidToken:
            return
        if claims["jti"] in self.hot.denied_jtis:  # denied already: a no-op, no write
            return
        await self._revoke_access(claims, family=False)

    async def _revoke_access(self, claims: dict[str, Any], family: bool) -> None:
        now = self.clock.now()
        keys: list[str] = []
        if await self.records.deny_jti(claims["jti"],
                                       min(float(claims["exp"]), now + 86400) + 60, now):
            keys.append(f"jti:{claims['jti']}")
        if family and claims.get("sid"):
            keys += await self.records.revoke_families(
                t.token_families.c.id == claims["sid"], now)
        await self._apply(keys)

    # -- helpers --------------------------------------------------------------------------

    async def _apply(self, keys: list[str]) -> None:
        """Apply revocations here at once, and tell every other process (Redis, when
        configured; the database log, already written, reaches them regardless)."""
        for key in keys:
            self.hot.apply(key)
        if self.socket_bus is not None:
            self.socket_bus.publish(keys)  # PostgreSQL: pg_notify went with the log rows
        if self.redis is not None:
            await self.redis.publish(keys)

    def _last_seen(self, token_hash: str) -> float | None:
        """A session's last use as this process knows it: exact for the sessions it serves,
        where the stored last_seen_at lags by up to the touch interval."""
        rec = self.hot.sessions.get(token_hash)
        return rec.last_seen_at if rec is not None else None

    def _role_scopes(self, roles: tuple[str, ...]) -> tuple[str, ...]:
        scopes = self._scopes.get(roles)
        if scopes is None:
            scopes = self._scopes[roles] = tuple(self.settings.scopes_for(list(roles)))
        return scopes

    @staticmethod
    def require_scopes(principal: Principal, scopes: list[str]) -> None:
        missing = [s for s in scopes if s not in principal.scopes]
        if missing:
            raise InsufficientScope(f"requires scope: {' '.join(missing)}")

    def _gauges(self) -> None:
        m, hot = self.metrics, self.hot
        m.gauge("cached_sessions", lambda: len(hot.sessions))
        m.gauge("cached_tokens", lambda: len(hot.verified))
        m.gauge("revoked_families", lambda: len(hot.revoked_families))
        m.gauge("revocation_fresh", lambda: float(hot.healthy))
        m.gauge("password_hash_waiting", self.hasher.waiting)
        m.labelled_gauges["outbox_pending"] = (
            "outbox", lambda: {"webhooks": float(self._outbox_pending)})

    async def metrics_text(self) -> bytes:
        """The Prometheus exposition of this process (the outbox depth read now)."""
        if self.webhooks is not None:
            with contextlib.suppress(AuthGateError):
                self._outbox_pending = len(await self.audit.pending())
        return self.metrics.render()

    async def health(self) -> dict[str, str]:
        """Each backend is ``ok`` when it answered within the last second: the revocation
        watcher reads the database every poll and pings Redis, so this costs no I/O (a
        lagging watcher catches up here first)."""
        with contextlib.suppress(BackendUnavailable):
            await self.hot.ensure_fresh()
        stale = set(self.hot.stale_sources())
        checks = {"database": "unavailable" if "db" in stale else "ok"}
        if self.redis is not None:
            checks["redis"] = "unavailable" if "redis" in stale else "ok"
        return checks


def _clean_username(username: Any) -> str:
    import unicodedata

    from authgate.errors import InvalidRequest

    if not isinstance(username, str):
        raise InvalidRequest("username must be a string")
    name = unicodedata.normalize("NFC", username).strip()
    if not 1 <= len(name) <= MAX_USERNAME_LENGTH:
        raise InvalidRequest(f"username must be 1 to {MAX_USERNAME_LENGTH} characters")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise InvalidRequest("username must not contain control characters")
    return name
