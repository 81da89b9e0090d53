"""The storage extension points, as small protocols: what the engine needs of each store.

* the record store (:class:`RecordStore`, by area: :class:`UserStore`, :class:`SessionStore`,
  :class:`TokenStore`, :class:`KeyStore`, :class:`RevocationLog`, :class:`MailStore`) — SQL in
  :class:`authgate.store.records.Records` (SQLite or PostgreSQL);
* second factors (:class:`FactorStore`) — :class:`authgate.store.factors.FactorRecords`,
  part of ``Records``; passkeys (:class:`PasskeyStore`) —
  :class:`authgate.store.passkeys.PasskeyRecords`, part of ``Records``;
* the session cache (:class:`SessionCache`) — Redis in
  :class:`authgate.store.redis_sessions.RedisSessions` (the in-process one is a
  :class:`authgate.hotstate.BoundedCache` in front of it);
* the revocation bus (:class:`RevocationBus`) — :class:`~authgate.store.socket_bus.SocketBus`
  (SQLite), :class:`~authgate.store.pg_notify_bus.PgNotifyBus` (PostgreSQL),
  :class:`~authgate.store.redis_bus.RedisBus` (Redis; :class:`RedisBackend
  <authgate.store.redis_backend.RedisBackend>` is one too, with the cache and liveness);
  the database's revocation log, which every process polls, stays the backstop of all;
* the throttle store (:class:`ThrottleStore`) —
  :class:`~authgate.store.db_throttle.DbThrottle` (SQLite or PostgreSQL) and
  :class:`~authgate.store.redis_throttle.RedisThrottle`.

A new backend is one module whose class satisfies one of these (``check_backends`` below
makes mypy say so) and passes the contract suite in ``tests/storage/``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from authgate.models import ApiKeyRecord, Revocation, SessionRecord, TokenFamily, User

if TYPE_CHECKING:
    from authgate.store.factors import PendingSignIn, TotpFactor
    from authgate.store.mail import Mail, MailToken
    from authgate.store.passkeys import Passkey, PasskeyChallenge
    from authgate.store.shared import LastSeen


class UserStore(Protocol):
    async def create_user(self, user: User, password_hash: str) -> User:
        """Store ``user``; raises ``UsernameTaken`` when its username key is in use."""
        ...

    async def user_with_hash(self, username: str) -> tuple[User, str] | None: ...

    async def password_hash(self, user_id: str) -> str | None: ...

    async def get_user(self, user_id: str) -> User | None: ...

    async def list_users(self) -> list[User]: ...

    async def search_users(self, query: str = "", after: str | None = None,
                           limit: int = 50) -> list[tuple[str, User]]:
        """Keyset pagination on the username key (see ``UserRecords.search_users``)."""
        ...

    async def update_user(self, user_id: str, *, logged_at: float | None = None,
                          **values: Any) -> bool: ...

    async def set_password_hash_if(self, user_id: str, old: str, new: str) -> None: ...

    async def cut_off_user(self, user_id: str, at: float, **values: Any) -> None:
        """Refuse the user's access tokens issued before ``at``; logged as a revocation."""
        ...

    async def user_by_email(self, email: str) -> User | None: ...

    async def delete_user(self, user_id: str, logged_at: float | None = None) -> bool:
        """Delete the user and everything that belongs to them."""
        ...


class MailStore(Protocol):
    """Single-use mail tokens (only their hashes) and the mails carrying them."""

    async def queue_mail(self, mails: list[Mail], now: float, token: MailToken | None = None,
                         *, replaces: str | None = None) -> None:
        """Store ``token`` and queue ``mails`` in one transaction (ending the user's unused
        tokens of purpose ``replaces`` first)."""
        ...

    async def same_work(self, now: float) -> None: ...

    async def mail_token(self, token_hash: str) -> MailToken | None: ...

    async def use_mail_token(self, token_hash: str, purposes: tuple[str, ...],
                             now: float) -> MailToken | None:
        """Mark an unused, unexpired token used; of concurrent uses exactly one wins."""
        ...

    async def end_mail_tokens(self, user_id: str, purpose: str, now: float) -> None: ...


class SessionStore(Protocol):
    """Durable session records; every write that ends sessions logs their revocation keys
    in its own transaction and returns them."""

    async def insert_session(self, rec: SessionRecord, max_per_user: int | None,
                             now: float, last_seen: LastSeen | None = None) -> list[Revocation]: ...

    async def get_session(self, token_hash: str) -> SessionRecord | None: ...

    async def touch_sessions(self, seen: Mapping[str, float]) -> None:
        """Write last-seen times (session ID → when), never moving one back."""

    async def user_sessions(self, user_id: str, now: float) -> list[SessionRecord]: ...

    async def delete_sessions(self, now: float, *, session_id: str | None = None,
                              user_id: str | None = None, token_hash: str | None = None,
                              keep: str | None = None) -> list[Revocation]: ...


class TokenStore(Protocol):
    """Token families, their single-use refresh tokens, and the ``jti`` denylist."""

    async def create_family(self, fam: TokenFamily, refresh_hash: str, refresh_expires: float,
                            max_per_user: int | None, now: float,
                            last_seen: LastSeen | None = None) -> list[Revocation]: ...

    async def rotate_refresh(self, token_hash: str, new_hash: str, now: float,
                             grace: float, idle_ttl: float | None
                             ) -> tuple[str, TokenFamily | None]: ...

    async def refresh_family(self, token_hash: str) -> TokenFamily | None: ...

    async def get_family(self, family_id: str) -> TokenFamily | None: ...

    async def user_families(self, user_id: str, now: float) -> list[TokenFamily]: ...

    async def revoke_families(self, now: float, *, family_id: str | None = None,
                              user_id: str | None = None, keep: str | None = None
                              ) -> list[Revocation]: ...

    async def deny_jti(self, jti: str, expires_at: float, now: float) -> bool: ...


class ApiKeyStore(Protocol):
    """API keys by the SHA-256 of the key; a revocation logs its key in its transaction."""

    async def insert_api_key(self, rec: ApiKeyRecord, max_per_user: int) -> bool: ...

    async def get_api_key(self, digest: str) -> ApiKeyRecord | None: ...

    async def user_api_keys(self, user_id: str, now: float) -> list[ApiKeyRecord]: ...

    async def revoke_api_keys(self, now: float, *, key_id: str | None = None,
                              user_id: str | None = None, digest: str | None = None
                              ) -> list[Revocation]: ...

    async def touch_api_keys(self, used: Mapping[str, float]) -> None: ...


class KeyStore(Protocol):
    async def signing_keys(self) -> list[dict[str, Any]]: ...

    async def insert_key(self, **values: Any) -> None: ...

    async def insert_first_key(self, alg: str, values: dict[str, Any]) -> None: ...

    async def update_key(self, kid: str, **values: Any) -> None: ...

    async def server_secret(self, name: str, make: str) -> str: ...


class RevocationLog(Protocol):
    """What a process reads to keep its caches honest (see ``HotState``)."""

    async def revocation_cursor(self) -> int: ...

    async def revocations_since(self, cursor: int
                                ) -> tuple[list[tuple[int, str, int]], int]: ...

    async def revoked_families_since(self, since: float) -> list[str]: ...

    async def denied_jtis(self, now: float) -> list[tuple[str, float]]: ...

    async def redis_epoch(self) -> int: ...

    async def bump_redis_epoch(self, now: float) -> int: ...


class FactorStore(Protocol):
    """Second factors: TOTP (secret already encrypted by the caller; the last accepted time
    step), recovery codes (by HMAC), pending sign-ins (by the SHA-256 of the mfa_token)."""

    async def totp_factor(self, user_id: str) -> TotpFactor | None: ...

    async def put_unconfirmed_totp(self, user_id: str, secret_enc: str, now: float
                                   ) -> bool: ...

    async def accept_step(self, user_id: str, step: int) -> bool:
        """Atomically: True when ``step`` is later than every step accepted before."""
        ...

    async def confirm_totp(self, user_id: str, code_hashes: list[str], now: float
                           ) -> bool: ...

    async def delete_factors(self, user_id: str) -> bool: ...

    async def use_recovery_code(self, user_id: str, code_hash: str, now: float
                                ) -> int | None: ...

    async def recovery_codes_left(self, user_id: str) -> int: ...

    async def insert_pending(self, pending: PendingSignIn, now: float) -> None: ...

    async def get_pending(self, token_hash: str) -> PendingSignIn | None: ...

    async def fail_pending(self, token_hash: str, max_failures: int) -> int: ...

    async def take_pending(self, token_hash: str) -> bool: ...


class PasskeyStore(Protocol):
    """Passkeys (WebAuthn public keys and counters) and their single-use challenges (by
    SHA-256)."""

    async def add_passkey(self, key: Passkey) -> bool: ...

    async def user_passkeys(self, user_id: str) -> list[Passkey]: ...

    async def count_passkeys(self, user_id: str) -> int: ...

    async def passkey_by_credential(self, credential_id: str) -> Passkey | None: ...

    async def rename_passkey(self, user_id: str, passkey_id: str, name: str) -> bool: ...

    async def delete_passkey(self, user_id: str, passkey_id: str) -> Passkey | None: ...

    async def delete_user_passkeys(self, user_id: str) -> list[Passkey]: ...

    async def use_passkey(self, passkey_id: str, old_count: int, new_count: int,
                          backed_up: bool, now: float) -> bool:
        """Atomically: the counter moves from ``old_count`` (else False: a parallel use)."""
        ...

    async def put_challenge(self, challenge: PasskeyChallenge, now: float) -> None: ...

    async def spend_challenge(self, challenge_hash: str, expires_at: float, now: float
                              ) -> bool:
        """Atomically: record a challenge as used; False when it was used before."""
        ...

    async def take_challenge(self, challenge_hash: str, purpose: str, binding: str,
                             now: float) -> PasskeyChallenge | None:
        """Atomically use up an unexpired challenge of ``purpose`` bound to ``binding``."""
        ...


class RecordStore(UserStore, SessionStore, TokenStore, KeyStore, RevocationLog, FactorStore,
                  PasskeyStore, MailStore, ApiKeyStore, Protocol):
    """Every record area, plus the housekeeping that spans them."""

    async def purge(self, now: float, keep_log: float = 3600.0) -> dict[str, int]: ...


class SessionCache(Protocol):
    """A cache of session records shared by processes, in front of the record store."""

    async def get_session(self, token_hash: str) -> SessionRecord | bool | None:
        """The record, ``False`` when revoked (a tombstone), ``None`` when unknown or when
        the cache cannot answer (then the record store is asked)."""
        ...

    async def put_session(self, rec: SessionRecord, now: float) -> None:
        """Fill the cache; never over a tombstone, never raises."""
        ...

    async def revoke_sessions(self, token_hashes: Iterable[str]) -> None:
        """Leave tombstones; raises when the cache cannot be reached."""
        ...


class RevocationBus(Protocol):
    """Carries revocation keys (``kind:key``) from the process that logged them to every
    other process, in milliseconds; the receiving side is the ``apply`` callable each bus is
    built with. A lost message costs at most a poll of the revocation log, never a
    revocation. A bus whose work is synchronous returns a completed awaitable, so each may
    be awaited alike."""

    def start(self) -> Awaitable[None]: ...

    def stop(self) -> Awaitable[None]: ...

    def publish(self, events: Sequence[Revocation]) -> Awaitable[None]:
        """Tell the other processes; the events are already in the revocation log."""
        ...


class ThrottleStore(Protocol):
    async def reserve(self, account: str, ip: str, device: str | None = None) -> float:
        """Count one attempt, before the password is checked: on ``account`` and ``ip``, or
        with ``device`` (a known browser of that account) on that device's own counter
        only. Returns the seconds to wait when refused (then nothing is counted), else 0."""
        ...

    async def succeeded(self, account: str, ip: str, device: str | None = None) -> None:
        """The reserved attempt was right: clear the account's (or device's) consecutive
        failures and give back its reservation on ``ip``."""
        ...

    async def hit(self, bucket: str, key: str, limit: int, window: float) -> float:
        """Count one request of ``key`` in ``bucket`` (at most ``limit`` per ``window``
        seconds from the window's first). Returns the seconds to wait when over the limit
        (then it is not counted), else 0."""
        ...

    async def purge(self) -> int:
        """Forget what no longer throttles anything; returns how many entries."""
        ...


if TYPE_CHECKING:  # mypy checks here that every backend satisfies its protocol

    def check_backends() -> None:
        """Never called."""
        from pathlib import Path

        from authgate.clock import SystemClock
        from authgate.hotstate import HotState
        from authgate.store.db import Database
        from authgate.store.db_throttle import DbThrottle
        from authgate.store.pg_notify_bus import PgNotifyBus
        from authgate.store.records import Records
        from authgate.store.redis_backend import RedisBackend
        from authgate.store.redis_bus import RedisBus
        from authgate.store.redis_sessions import RedisSessions
        from authgate.store.redis_throttle import RedisThrottle
        from authgate.store.socket_bus import SocketBus

        db, clock = Database("sqlite://"), SystemClock()
        records: RecordStore = Records(db)
        redis = RedisBackend("redis://", HotState(Records(db), clock), clock)
        cache: SessionCache = RedisSessions(redis.client, "p", lambda: 0)
        buses: list[RevocationBus] = [
            SocketBus(Path("x"), print), PgNotifyBus("postgresql://", print),
            RedisBus(redis.client, "c", print), redis]
        throttles: list[ThrottleStore] = [DbThrottle(db, clock),
                                          RedisThrottle(redis.client, clock)]
        del records, cache, buses, throttles
