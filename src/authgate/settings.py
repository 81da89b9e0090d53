"""One validated settings object: environment variables ``AUTHGATE_<NAME>`` and a TOML file.

Precedence (highest first): keyword arguments, environment, the ``--config`` TOML file,
defaults. Every default is the safe one; loosening needs an explicit setting.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from authgate.errors import ConfigError
from authgate.setting_checks import check_origins, split_csv
from authgate.setting_groups import GROUPS, GroupViews, PasswordHashPreset
from authgate.setting_mail import MailFields
from authgate.setting_sso import SsoFields
from authgate.setting_webauthn import WebauthnFields

SigningAlg = Literal["EdDSA", "ES256", "RS256", "HS256"]


def is_loopback_host(host: str | None) -> bool:
    """Whether only this machine reaches ``host`` (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

_REGISTERED_ONLY = {"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "scope", "roles", "typ",
                   "amr", "auth_time"}


class Settings(GroupViews, BaseSettings, MailFields, SsoFields, WebauthnFields):
    """Everything authgate can be told. Field names are the ``AUTHGATE_`` variables, lowercased.

    The code reads them through grouped, read-only views built once per object
    (``settings.sessions.idle_ttl``, ``settings.tokens.access_ttl``, ...; see
    :mod:`authgate.setting_groups`); validation stays here, in one place.
    """

    model_config = SettingsConfigDict(
        env_prefix="AUTHGATE_",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    database_url: str = "sqlite:///./authgate.db"
    redis_url: str | None = None
    redis_prefix: str = Field(default="authgate", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    public_url: str = "http://127.0.0.1:8000"
    issuer: str | None = None
    audience: str = "authgate"

    access_token_ttl: int = Field(default=15 * 60, ge=10, le=24 * 3600)
    refresh_token_ttl: int = Field(default=30 * 24 * 3600, ge=60)
    refresh_idle_ttl: int | None = Field(default=15 * 24 * 3600, ge=60)
    session_idle_ttl: int = Field(default=30 * 60, ge=1)
    session_absolute_ttl: int = Field(default=12 * 3600, ge=1)
    remember_me_ttl: int = Field(default=30 * 24 * 3600, ge=1)
    session_touch_interval: int = Field(default=60, ge=0)
    refresh_reuse_grace: int = Field(default=0, ge=0, le=30)
    cookie_refresh_reuse_grace: int = Field(default=10, ge=0, le=30)
    token_leeway: int = Field(default=0, ge=0, le=30)

    cookie_secure: bool = True
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    open_registration: bool = True

    signing_alg: SigningAlg = "EdDSA"
    signing_key_file: Path | None = None
    hs256_secret: SecretStr | None = None
    # Access tokens as nested JWTs: the signed token inside a JWE (ECDH-ES+A256KW, A256GCM).
    token_encryption: bool = False

    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    role_scopes: Annotated[dict[str, list[str]], NoDecode] = Field(default_factory=dict)
    mfa_required_roles: Annotated[list[str], NoDecode] = Field(default_factory=list)

    password_min_length: int = Field(default=12, ge=8, le=1024)
    max_sessions_per_user: int | None = Field(default=None, ge=1)

    account_lock_threshold: int = Field(default=5, ge=1, le=10)
    ip_failure_limit: int = Field(default=50, ge=1, le=100)
    ip_failure_window: int = Field(default=15 * 60, ge=1)
    device_cookie_ttl: int = Field(default=365 * 24 * 3600, ge=60)
    registration_limit: int = Field(default=20, ge=1)
    registration_window: int = Field(default=10 * 60, ge=1)
    revoke_limit: int = Field(default=300, ge=1)
    revoke_window: int = Field(default=10 * 60, ge=1)
    credential_guess_limit: int = Field(default=300, ge=0)  # 0: off (core/guessing.py)
    credential_guess_window: int = Field(default=60, ge=1)

    argon2_memory_kib: int = Field(default=19456, ge=19456)
    argon2_time_cost: int = Field(default=2, ge=2)
    argon2_parallelism: int = Field(default=1, ge=1)
    # "test": argon2-cffi's cheapest parameters, for test suites; refused unless PUBLIC_URL
    # is loopback (see _test_preset_is_local).
    password_hash_preset: PasswordHashPreset = "default"

    revocation_poll_interval: float = Field(default=0.25, gt=0, le=1.0)
    cache_size: int = Field(default=200_000, ge=1000)  # entries per in-process cache
    token_cache_mb: int = Field(default=64, ge=1)  # the verified-token cache's byte cap

    log_format: Literal["text", "json"] = "text"
    access_log: bool = False  # a line per request halves the fast path's throughput
    metrics_token: SecretStr | None = None
    metrics_address: str | None = Field(default=None, pattern=r"^\[?[A-Za-z0-9.:-]*\]?:[0-9]{1,5}$")
    audit_retention_days: int = Field(default=90, ge=1)
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    # Encrypts TOTP secrets at rest (HKDF → AES-GCM); unset: the database's own secret.
    mfa_key: SecretStr | None = None

    @field_validator("allowed_origins", "trusted_proxies", "mfa_required_roles", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return split_csv(value)

    @field_validator("role_scopes", mode="before")
    @classmethod
    def _role_scopes(cls, value: Any) -> Any:
        # "admin=reports:read reports:write;editor=reports:read" or a JSON/TOML table.
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("{"):
                import json

                return json.loads(value)
            table: dict[str, list[str]] = {}
            for item in value.split(";"):
                if not item.strip():
                    continue
                role, sep, scopes = item.partition("=")
                if not sep or not role.strip():
                    raise ValueError("expected role=scope1 scope2;role2=scope3")
                table[role.strip()] = scopes.replace(",", " ").split()
            return table
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL such as https://auth.example.com")
        return value.rstrip("/")

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        return check_origins(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        scheme = value.split(":", 1)[0]
        if scheme not in ("sqlite", "sqlite+aiosqlite", "postgresql", "postgresql+asyncpg",
                          "postgres"):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.session_idle_ttl > self.session_absolute_ttl:
            raise ValueError("session_idle_ttl must not exceed session_absolute_ttl")
        if self.signing_alg == "HS256":
            secret = self.hs256_secret.get_secret_value() if self.hs256_secret else ""
            if len(secret.encode()) < 32:
                raise ValueError(
                    "SIGNING_ALG=HS256 needs AUTHGATE_HS256_SECRET of at least 32 random bytes"
                )
        return self

    @field_validator("password_hash_preset")
    @classmethod
    def _test_preset_is_local(cls, value: str, info: ValidationInfo) -> str:
        # A deployment that serves anyone else has a PUBLIC_URL other browsers can reach;
        # loopback (the default) is a developer's machine or a test harness.
        public_url = info.data.get("public_url")
        if value == "test" and public_url and not is_loopback_host(urlsplit(public_url).hostname):
            raise ValueError("the test preset (argon2-cffi's cheapest parameters, no "
                             "protection) is for tests: it needs a loopback PUBLIC_URL "
                             "(127.0.0.1, ::1 or localhost)")
        return value

    @model_validator(mode="after")
    def _one_source_of_argon2_parameters(self) -> Settings:
        explicit = sorted(n for n in self.model_fields_set if n.startswith("argon2_"))
        if self.password_hash_preset == "test" and explicit:
            raise ValueError(f"PASSWORD_HASH_PRESET=test replaces {', '.join(explicit)}: "
                             "set one or the other")
        return self

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _webhook_secret(self) -> Settings:
        if self.webhook_url:
            from authgate.webhooks import secret_key

            if self.webhook_secret is None:
                raise ValueError("WEBHOOK_URL needs AUTHGATE_WEBHOOK_SECRET (whsec_<base64>)")
            try:
                secret_key(self.webhook_secret.get_secret_value())
            except ValueError as exc:
                raise ValueError(f"AUTHGATE_WEBHOOK_SECRET {exc}") from None
        return self

    def model_copy(self, *, update: Mapping[str, Any] | None = None,
                   deep: bool = False) -> Settings:
        copied = super().model_copy(update=update, deep=deep)
        for name in GROUPS:  # the views of the original are not the copy's
            copied.__dict__.pop(name, None)
        return copied

    @property
    def token_issuer(self) -> str:
        """``ISSUER``, or ``PUBLIC_URL`` when unset."""
        return self.issuer or self.public_url

    @property
    def public_origin(self) -> str:
        """``scheme://host[:port]`` of ``PUBLIC_URL``."""
        parts = urlsplit(self.public_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def cookie_prefix(self) -> str:
        """``__Host-`` with secure cookies, else nothing."""
        return "__Host-" if self.cookie_secure else ""

    @property
    def session_cookie(self) -> str:
        """The session cookie's name (``__Secure-``, not ``__Host-``, with a ``Domain``)."""
        if self.cookie_domain is not None:
            return f"{'__Secure-' if self.cookie_secure else ''}authgate"
        return f"{self.cookie_prefix}authgate"

    @property
    def access_cookie(self) -> str:
        """The access-token cookie's name (tokens in cookies)."""
        return f"{self.cookie_prefix}authgate-at"

    @property
    def refresh_cookie(self) -> str:
        """The refresh-token cookie's name (``__Secure-``: its path is /auth/token)."""
        return f"{'__Secure-' if self.cookie_secure else ''}authgate-rt"

    @property
    def device_cookie(self) -> str:
        """The device cookie's name (login throttling of a known browser; not a credential)."""
        return f"{self.cookie_prefix}authgate-device"

    def scopes_for(self, roles: list[str], mfa: bool = True) -> list[str]:
        """Every scope the given roles grant (a role grants its own name unless mapped)."""
        return self.tokens.scopes_for(roles, mfa)


def read_config_file(config_file: str | Path | None) -> dict[str, Any]:
    """The settings in a TOML file (top level or an ``[authgate]`` table), keys lowercased."""
    if config_file is None:
        return {}
    path = Path(config_file)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    section = raw.get("authgate", raw)
    return {str(k).lower(): v for k, v in section.items()}


def _environment() -> dict[str, str]:
    import os

    return {k.upper(): v for k, v in os.environ.items()}


def source_of(name: str, config_file: str | Path | None = None,
              overrides: dict[str, Any] | None = None) -> str:
    """Where the effective value of setting ``name`` comes from: ``argument``,
    ``environment (AUTHGATE_NAME)``, ``file (PATH)`` or ``default``."""
    if overrides and name in overrides:
        return "argument"
    if f"AUTHGATE_{name}".upper() in _environment():
        return f"environment (AUTHGATE_{name.upper()})"
    if name in read_config_file(config_file):
        return f"file ({config_file})"
    return "default"


#: The test harness's clock (an offset file; read by the CLI only, see cli/base.py): not a
#: setting, so no configuration file or ``Settings(...)`` can move a deployment's time.
TEST_CLOCK_FILE = "AUTHGATE_TEST_CLOCK_FILE"

#: AUTHGATE_* variables that are not settings but are read by the CLI or the test harness.
NOT_SETTINGS = {"AUTHGATE_CONFIG", "AUTHGATE_TEST_POSTGRES", "AUTHGATE_TEST_REDIS",
                TEST_CLOCK_FILE}


def unknown_environment() -> list[str]:
    """One warning per ``AUTHGATE_*`` variable that names no setting (a typo changes
    nothing and would otherwise say nothing), with the closest known name."""
    import difflib

    known = {f"AUTHGATE_{name.upper()}" for name in Settings.model_fields}
    found = []
    for var in sorted(_environment()):
        if var.startswith("AUTHGATE_") and var not in known and var not in NOT_SETTINGS:
            close = difflib.get_close_matches(var, sorted(known), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            found.append(f"unknown setting {var} is ignored{hint}")
    return found


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from a TOML file (keys as in the environment, any case), the environment
    and ``overrides``; raises :class:`ConfigError` with one readable line on bad input."""
    from pydantic import ValidationError

    file_values = read_config_file(config_file)

    class _FromFile(Settings):
        @classmethod
        def settings_customise_sources(cls, settings_cls: Any, init_settings: Any,
                                       env_settings: Any, dotenv_settings: Any,
                                       file_secret_settings: Any) -> tuple[Any, ...]:
            def toml_source() -> dict[str, Any]:
                return file_values

            return (init_settings, env_settings, toml_source)

    def in_file(name: str) -> bool:
        return source_of(name, config_file, overrides).startswith("file")

    try:
        built = _FromFile(**overrides)
    except ValidationError as exc:
        file_name = str(config_file) if config_file is not None else None
        raise ConfigError(describe_validation_error(exc, file_name, in_file)) from None
    # Keep which settings were given (environment, file or keyword) apart from defaults.
    return Settings.model_construct(_fields_set=set(built.model_fields_set),
                                    **built.model_dump())


def describe_validation_error(exc: Any, config_file: str | None = None,
                              in_file: Any = None) -> str:
    """One line naming the first bad setting as the user would spell it: the TOML key and
    file when the value came from the file, else the environment variable."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    msg = str(err.get("msg", "invalid"))
    from_file = bool(loc and config_file and in_file is not None and in_file(loc))
    if err.get("type") == "extra_forbidden":
        return (f"unknown setting {loc!r} in {config_file}" if from_file
                else f"unknown setting {loc!r}")
    if from_file:
        return f"bad setting {loc} in {config_file}: {msg}"
    if loc:
        return f"bad setting AUTHGATE_{loc.upper()}: {msg}"
    return f"bad settings: {msg}"


def check_extra_claims(names: set[str]) -> None:
    clash = sorted(names & _REGISTERED_ONLY)
    if clash:
        raise ConfigError(f"extra_claims may not set registered claims: {', '.join(clash)}")
