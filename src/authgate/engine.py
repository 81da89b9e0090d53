"""The engine: the composition root that builds authgate's services over a store, the hot
state and the revocation buses, starts and stops them, and answers health and metrics.

The services live in :mod:`authgate.core` (users, sign-in, sessions, grants, revocation);
the HTTP app, the FastAPI/Starlette adapters, the CLI and the pages call them through
:class:`authgate.AuthGate`, which owns one engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import TYPE_CHECKING

from authgate.clock import Clock, SystemClock
from authgate.core.account import Account
from authgate.core.admin import Admin
from authgate.core.api_keys import ApiKeys
from authgate.core.credentials import Macs, Sealer
from authgate.core.factors import Factors
from authgate.core.grants import ExtraClaims, Grants
from authgate.core.guessing import GuessWatch
from authgate.core.notices import FactorNotices
from authgate.core.passkeys import Passkeys
from authgate.core.revocation import Revocations
from authgate.core.sessions import Sessions
from authgate.core.signin import SignIn
from authgate.core.users import Users
from authgate.errors import (
    AuthGateError,
    BackendUnavailable,
    InsufficientScope,
    InsufficientUserAuthentication,
)
from authgate.events import Events, Hook
from authgate.hotstate import HotState
from authgate.keys import KeyRing
from authgate.mail import LogTransport, MailSender, SmtpTransport, Transport, parse_smtp_url
from authgate.mail.render import Renderer
from authgate.metrics import Metrics
from authgate.models import Principal, User
from authgate.passwords import PasswordHasher
from authgate.settings import Settings, check_extra_claims
from authgate.store.audit import AuditRecords
from authgate.store.db import Database
from authgate.store.db_throttle import DbThrottle
from authgate.store.pg_notify_bus import PgNotifyBus
from authgate.store.protocols import ThrottleStore
from authgate.store.records import Records
from authgate.store.socket_bus import SocketBus
from authgate.tasks import cancel
from authgate.tokens import AccessTokens
from authgate.webhooks import WebhookSender

if TYPE_CHECKING:
    from authgate.store.redis_backend import RedisBackend

__all__ = ["Engine", "ExtraClaims"]

log = logging.getLogger("authgate")


class Engine:
    """authgate's services, wired over one database and this process's hot state."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None,
                 extra_claims: ExtraClaims | None = None,
                 throttle: ThrottleStore | None = None,
                 on_event: Hook | None = None) -> None:
        self.settings = settings
        self.clock = clock if clock is not None else SystemClock()
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
                            secret, encryption=settings.token_encryption)
        self.tokens = AccessTokens(self.keys, settings.token_issuer, settings.audience,
                                   settings.access_token_ttl, settings.token_leeway,
                                   encrypt=settings.token_encryption)
        self.hot = HotState(self.records, self.clock, settings.revocation_poll_interval,
                            capacity=settings.cache_size,
                            token_cache_bytes=settings.token_cache_mb * 1024 * 1024)
        self._gauges()
        # Between processes without Redis, in milliseconds (the log stays the backstop).
        self.socket_bus: SocketBus | None = None
        self.notify_bus: PgNotifyBus | None = None
        delay = self.metrics.revocation_delay.observe
        if self.db.sqlite_path is not None:
            self.socket_bus = SocketBus(self.db.sqlite_path, self.hot.receive, delay)
        elif not self.db.is_sqlite:
            self.notify_bus = PgNotifyBus(self.db.driver_url, self.hot.receive, delay)
        self.redis: RedisBackend | None = None
        if settings.redis_url:
            from authgate.store.redis_backend import RedisBackend
            from authgate.store.redis_throttle import RedisThrottle

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
        self.cookie_names = (settings.session_cookie, settings.access_cookie)

        # The services.
        self.macs = Macs()
        self.revocations = Revocations(self.records, self.hot, self.clock, self.socket_bus,
                                       self.redis)
        self.signin = SignIn(self.records, self.throttle, self.hasher, self.events,
                             self.metrics, self.macs, settings.require_verified_email)
        self.notices = FactorNotices(settings, self.clock, self.records)
        self.passkeys = Passkeys(settings, self.clock, self.records, self.signin,
                                 self.events, self.notices, self.macs, self.revocations)
        self.factors = Factors(settings, self.clock, self.records, self.signin,
                               self.throttle, self.events, self.revocations,
                               passkeys=self.passkeys, notices=self.notices)
        self.users = Users(settings, self.clock, self.records, self.hot, self.hasher,
                           self.events, self.revocations, self.signin)
        self.sessions = Sessions(settings, self.clock, self.records, self.hot, self.redis,
                                 self.users, self.signin, self.revocations, self.events,
                                 self.metrics, self.factors, passkeys=self.passkeys)
        self.grants = Grants(settings, self.clock, self.records, self.hot, self.keys,
                             self.tokens, self.users, self.signin, self.revocations,
                             self.events, self.metrics, self.macs, self.sessions.last_seen,
                             extra_claims, self.factors, passkeys=self.passkeys)
        self.api_keys = ApiKeys(self.clock, self.records, self.hot, self.users,
                                self.revocations, self.events, self.metrics,
                                self.sessions.role_scopes)
        self.sessions.api_keys = self.api_keys
        self.guessing = GuessWatch(settings.credential_guess_limit,
                                   settings.credential_guess_window, self.clock,
                                   self._guessing_blocked)
        self.grants.api_keys = self.api_keys
        self.sealer = Sealer()
        self.mail_transport: Transport = (
            SmtpTransport(parse_smtp_url(settings.smtp_url.get_secret_value()))
            if settings.smtp_url else LogTransport())
        self.mailer = MailSender(self.db, self.mail_transport,
                                 Renderer(settings.mail_templates_dir), self.sealer,
                                 self.clock, settings.mail_from)
        self.notices.wake = self.mailer.wake
        self.account = Account(settings, self.clock, self.records, self.users, self.signin,
                               self.revocations, self.events, self.sealer, self.mailer.wake)
        self.admin = Admin(settings, self.records, self.users, self.sessions, self.factors,
                           self.account, self.audit, self.api_keys)
        self._mail_pending = 0
        self._started = False
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, *, migrate: bool = True, redis_required: bool = True) -> None:
        """``redis_required=False`` (the CLI): an unreachable Redis is a warning, not a
        failure — what a command revokes is in the database log, which every server reads."""
        if self._started:
            return
        if migrate:
            await self.db.migrate()
        await self.keys.load(self.clock.now())
        self.macs.key = bytes.fromhex(
            await self.records.server_secret("csrf", secrets.token_hex(32)))
        await self.factors.load_keys()
        await self.load_mail_key()
        await self.hasher.dummy_hash()
        await self.hot.start(self.settings.access_token_ttl)
        self.api_keys.start()
        if self.redis is not None:
            try:
                await self.redis.start()
            except BackendUnavailable as exc:
                if redis_required:
                    raise
                log.warning("%s: going on without it (servers read the database log)",
                            exc.detail)
        if self.socket_bus is not None:
            self.socket_bus.start()
        if self.notify_bus is not None:
            self.notify_bus.start()
        if self.grants.extra_claims is not None:
            probe = await self.grants.claims_for(User(id="probe", username="probe"))
            check_extra_claims(set(probe))
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="authgate-purge"))
        self._tasks.append(asyncio.create_task(self._write_behind(), name="authgate-touch"))
        self.events.start()
        if self.webhooks is not None:
            self.webhooks.start()
        self.mailer.start()
        self._started = True

    async def load_mail_key(self) -> None:
        """The key that seals mail tokens in the outbox (a server secret)."""
        self.sealer.key = bytes.fromhex(
            await self.records.server_secret("mail", secrets.token_hex(32)))

    async def stop(self) -> None:
        await cancel(*self._tasks)
        self._tasks.clear()
        if self._started:
            try:
                await self.sessions.flush_touches()
            except Exception as exc:  # stopping goes on: the times are advisory
                log.warning("last-seen times not written at stop: %s", exc)
        await self.events.stop()
        if self.webhooks is not None:
            await self.webhooks.stop()
        await self.mailer.stop()
        await self.api_keys.stop()
        await self.hot.stop()
        if self.redis is not None:
            await self.redis.stop()
        if self.socket_bus is not None:
            self.socket_bus.stop()
        if self.notify_bus is not None:
            await self.notify_bus.stop()
        await self.db.close()
        self._started = False

    async def _write_behind(self) -> None:
        """Write the sessions' last-seen times once a second, off the requests that saw them
        (other workers judge idleness from the stored value: it lags by at most a second more
        than SESSION_TOUCH_INTERVAL)."""
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.sessions.flush_touches()
            except AuthGateError:
                pass  # the database is away: kept for the next round
            except Exception:
                log.exception("writing last-seen times failed")

    async def _housekeeping(self) -> None:
        """Reload keys every 30 s (a rotation made elsewhere shows up in the JWKS well before
        the new key signs); purge expired records every 5 minutes."""
        rounds = 0
        while True:
            await asyncio.sleep(30)
            rounds += 1
            try:
                await self.grants.reload_keys()
                if rounds % 10 == 0:
                    await self.purge()
            except AuthGateError:
                pass
            except Exception:
                log.exception("housekeeping failed")

    async def purge(self) -> dict[str, int]:
        """Delete expired sessions, refresh tokens and denylist entries."""
        await self.sessions.flush_touches()  # not an idle-looking session used just now
        counts = await self.records.purge(self.clock.now())
        counts["throttle"] = await self.throttle.purge()
        counts["audit_events"] = await self.audit.purge(
            self.clock.now() - self.settings.audit_retention_days * 86400)
        counts["mail_outbox"] = await self.mailer.outbox.purge(
            self.clock.now() - self.settings.audit_retention_days * 86400)
        self.hot.sessions.expire(lambda s: not s.alive_at(self.clock.now()))
        return counts

    @staticmethod
    def require_scopes(principal: Principal, scopes: list[str]) -> None:
        missing = [s for s in scopes if s not in principal.scopes]
        if missing:
            raise InsufficientScope(f"requires scope: {' '.join(missing)}")

    def require_auth(self, principal: Principal, *, mfa: bool = False,
                     max_age: int | None = None) -> None:
        """RFC 9470 step-up: the sign-in behind ``principal`` used a second factor (``mfa``)
        and/or happened at most ``max_age`` seconds ago; else
        :class:`InsufficientUserAuthentication`. No I/O: the session record or the token's
        claims carry ``amr`` and ``auth_time``."""
        if mfa and not principal.mfa:
            raise InsufficientUserAuthentication(
                "a sign-in with a second factor is required", mfa=True, max_age=max_age)
        if max_age is not None:
            at = principal.auth_time
            if at is None or self.clock.now() - at > max_age:
                raise InsufficientUserAuthentication(
                    f"a sign-in within the last {max_age} seconds is required", mfa=mfa,
                    max_age=max_age)

    # -- operations -----------------------------------------------------------------------

    def _guessing_blocked(self, address: str, refused: int) -> None:
        self.events.emit("credentials.guessing", actor="system", ip=address,
                         level=logging.WARNING, refused=refused,
                         window=self.settings.credential_guess_window)

    def _gauges(self) -> None:
        m, hot = self.metrics, self.hot
        m.gauge("cached_sessions", lambda: len(hot.sessions))
        m.gauge("cached_tokens", lambda: len(hot.verified))
        m.gauge("revoked_families", lambda: len(hot.revoked_families))
        m.gauge("revocation_fresh", lambda: float(hot.healthy))
        m.gauge("password_hash_waiting", self.hasher.waiting)
        m.labelled_gauges["outbox_pending"] = (
            "outbox", lambda: {"webhooks": float(self._outbox_pending),
                               "mail": float(self._mail_pending)})

    async def metrics_text(self) -> bytes:
        """The Prometheus exposition of this process (the outbox depth read now)."""
        if self.webhooks is not None:
            with contextlib.suppress(AuthGateError):
                self._outbox_pending = len(await self.audit.pending())
        with contextlib.suppress(AuthGateError):
            self._mail_pending = await self.mailer.outbox.depth()
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
