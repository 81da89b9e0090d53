"""Grouped, typed, read-only views of :class:`authgate.settings.Settings`.

Users still see one flat surface (``AUTHGATE_<NAME>`` and the TOML keys, validated once by
the pydantic model); the code reads ``settings.sessions.idle_ttl``,
``settings.tokens.access_ttl``, ``settings.passwords.argon2_memory_kib`` and so on. Each
group is a frozen dataclass built once per Settings object (a ``cached_property`` there), so a
read costs what reading a field costs. Lists become tuples and tables read-only mappings.

``SOURCE`` maps each attribute of a group to the flat setting (or derived property) it views;
every setting belongs to exactly one group (a unit test checks it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Literal, Self

from pydantic import SecretStr

PasswordHashPreset = Literal["default", "test"]


def _frozen(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    return value


@dataclass(frozen=True, slots=True)
class _Group:
    SOURCE: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def of(cls, settings: Any) -> Self:
        """The group's view of ``settings`` (read once; the group never changes)."""
        return cls(**{attr: _frozen(getattr(settings, name))
                      for attr, name in cls.SOURCE.items()})


@dataclass(frozen=True, slots=True)
class ServerSettings(_Group):
    """Where clients come from and what the server tells operators."""

    public_url: str
    public_origin: str
    allowed_origins: tuple[str, ...]
    trusted_proxies: tuple[str, ...]
    open_registration: bool
    log_format: Literal["text", "json"]
    access_log: bool
    metrics_token: SecretStr | None
    metrics_address: str | None
    webauthn_rp_id: str | None
    webauthn_origins: tuple[str, ...]
    SOURCE: ClassVar[Mapping[str, str]] = {
        "webauthn_rp_id": "webauthn_rp_id", "webauthn_origins": "webauthn_origins",
        "public_url": "public_url", "public_origin": "public_origin",
        "allowed_origins": "allowed_origins", "trusted_proxies": "trusted_proxies",
        "open_registration": "open_registration", "log_format": "log_format",
        "access_log": "access_log", "metrics_token": "metrics_token",
        "metrics_address": "metrics_address"}


@dataclass(frozen=True, slots=True)
class StorageSettings(_Group):
    """The record store and the hot state."""

    database_url: str
    redis_url: str | None
    redis_prefix: str
    revocation_poll_interval: float
    cache_size: int
    token_cache_mb: int
    SOURCE: ClassVar[Mapping[str, str]] = {
        "database_url": "database_url", "redis_url": "redis_url",
        "redis_prefix": "redis_prefix", "revocation_poll_interval": "revocation_poll_interval",
        "cache_size": "cache_size", "token_cache_mb": "token_cache_mb"}


@dataclass(frozen=True, slots=True)
class SessionSettings(_Group):
    """Cookie sessions: lifetimes (seconds) and the per-user cap."""

    idle_ttl: int
    absolute_ttl: int
    remember_me_ttl: int
    touch_interval: int
    max_per_user: int | None
    SOURCE: ClassVar[Mapping[str, str]] = {
        "idle_ttl": "session_idle_ttl", "absolute_ttl": "session_absolute_ttl",
        "remember_me_ttl": "remember_me_ttl", "touch_interval": "session_touch_interval",
        "max_per_user": "max_sessions_per_user"}


@dataclass(frozen=True, slots=True)
class TokenSettings(_Group):
    """Access and refresh tokens, their signing and their scopes."""

    issuer: str
    audience: str
    access_ttl: int
    refresh_ttl: int
    refresh_idle_ttl: int | None
    refresh_reuse_grace: int
    cookie_refresh_reuse_grace: int
    leeway: int
    signing_alg: str
    signing_key_file: Path | None
    hs256_secret: SecretStr | None
    role_scopes: Mapping[str, tuple[str, ...]]
    mfa_required_roles: tuple[str, ...]
    encryption: bool
    SOURCE: ClassVar[Mapping[str, str]] = {
        "issuer": "token_issuer", "audience": "audience", "access_ttl": "access_token_ttl",
        "refresh_ttl": "refresh_token_ttl", "refresh_idle_ttl": "refresh_idle_ttl",
        "refresh_reuse_grace": "refresh_reuse_grace",
        "cookie_refresh_reuse_grace": "cookie_refresh_reuse_grace",
        "leeway": "token_leeway", "signing_alg": "signing_alg",
        "signing_key_file": "signing_key_file", "hs256_secret": "hs256_secret",
        "role_scopes": "role_scopes", "encryption": "token_encryption",
        "mfa_required_roles": "mfa_required_roles"}

    def scopes_for(self, roles: list[str] | tuple[str, ...], mfa: bool = True) -> list[str]:
        """Every scope the given roles grant (a role grants its own name unless mapped);
        without ``mfa`` (a sign-in without a second factor), none of the roles in
        ``MFA_REQUIRED_ROLES``."""
        granted: list[str] = []
        for role in roles:
            if not mfa and role in self.mfa_required_roles:
                continue
            for scope in self.role_scopes.get(role, (role,)):
                if scope not in granted:
                    granted.append(scope)
        return granted


@dataclass(frozen=True, slots=True)
class CookieSettings(_Group):
    """``COOKIE_SECURE``, ``COOKIE_DOMAIN`` and the cookie names they imply."""

    secure: bool
    domain: str | None
    session: str
    access: str
    refresh: str
    device: str
    SOURCE: ClassVar[Mapping[str, str]] = {
        "secure": "cookie_secure", "domain": "cookie_domain", "session": "session_cookie",
        "access": "access_cookie", "refresh": "refresh_cookie", "device": "device_cookie"}


@dataclass(frozen=True, slots=True)
class PasswordSettings(_Group):
    """The password policy and the Argon2id parameters (``hash_preset="test"``: argon2-cffi's
    cheapest parameters instead of the ``argon2_*`` ones; test deployments only); and
    ``mfa_key``, which encrypts the second factors' secrets at rest."""

    min_length: int
    hash_preset: PasswordHashPreset
    argon2_memory_kib: int
    argon2_time_cost: int
    argon2_parallelism: int
    mfa_key: SecretStr | None
    SOURCE: ClassVar[Mapping[str, str]] = {
        "mfa_key": "mfa_key", "min_length": "password_min_length",
        "hash_preset": "password_hash_preset",
        "argon2_memory_kib": "argon2_memory_kib", "argon2_time_cost": "argon2_time_cost",
        "argon2_parallelism": "argon2_parallelism"}


@dataclass(frozen=True, slots=True)
class ThrottleSettings(_Group):
    """Login throttling and the per-address limits on unauthenticated writes."""

    account_lock_threshold: int
    ip_failure_limit: int
    ip_failure_window: int
    device_cookie_ttl: int
    registration_limit: int
    registration_window: int
    revoke_limit: int
    revoke_window: int
    credential_guess_limit: int
    credential_guess_window: int
    SOURCE: ClassVar[Mapping[str, str]] = {
        "account_lock_threshold": "account_lock_threshold",
        "ip_failure_limit": "ip_failure_limit", "ip_failure_window": "ip_failure_window",
        "device_cookie_ttl": "device_cookie_ttl", "registration_limit": "registration_limit",
        "registration_window": "registration_window", "revoke_limit": "revoke_limit",
        "revoke_window": "revoke_window",
        "credential_guess_limit": "credential_guess_limit",
        "credential_guess_window": "credential_guess_window"}


@dataclass(frozen=True, slots=True)
class AuditSettings(_Group):
    """The audit trail and where its events are sent."""

    retention_days: int
    webhook_url: str | None
    webhook_secret: SecretStr | None
    SOURCE: ClassVar[Mapping[str, str]] = {
        "retention_days": "audit_retention_days", "webhook_url": "webhook_url",
        "webhook_secret": "webhook_secret"}


@dataclass(frozen=True, slots=True)
class MailSettings(_Group):
    """Mail delivery and the account lifecycle's tokens and limits."""

    smtp_url: SecretStr | None
    sender: str
    templates_dir: Path | None
    reset_token_ttl: int
    verify_token_ttl: int
    require_verified: bool
    limit: int
    window: int
    SOURCE: ClassVar[Mapping[str, str]] = {
        "smtp_url": "smtp_url", "sender": "mail_from", "templates_dir": "mail_templates_dir",
        "reset_token_ttl": "reset_token_ttl", "verify_token_ttl": "verify_token_ttl",
        "require_verified": "require_verified_email", "limit": "mail_limit",
        "window": "mail_window"}


#: The groups, by the name of their view on Settings.
GROUPS: Mapping[str, type[_Group]] = MappingProxyType({
    "server": ServerSettings, "storage": StorageSettings, "sessions": SessionSettings,
    "tokens": TokenSettings, "cookies": CookieSettings, "passwords": PasswordSettings,
    "throttle": ThrottleSettings, "audit": AuditSettings, "mail": MailSettings})


class GroupViews:
    """The groups as views on Settings (mixed into it): each built on first use, then a plain
    attribute read."""

    @cached_property
    def server(self) -> ServerSettings:
        return ServerSettings.of(self)

    @cached_property
    def storage(self) -> StorageSettings:
        return StorageSettings.of(self)

    @cached_property
    def sessions(self) -> SessionSettings:
        return SessionSettings.of(self)

    @cached_property
    def tokens(self) -> TokenSettings:
        return TokenSettings.of(self)

    @cached_property
    def cookies(self) -> CookieSettings:
        return CookieSettings.of(self)

    @cached_property
    def passwords(self) -> PasswordSettings:
        return PasswordSettings.of(self)

    @cached_property
    def throttle(self) -> ThrottleSettings:
        return ThrottleSettings.of(self)

    @cached_property
    def audit(self) -> AuditSettings:
        return AuditSettings.of(self)

    @cached_property
    def mail(self) -> MailSettings:
        return MailSettings.of(self)
