"""The engine's value types. Plain dataclasses: no framework, no ORM."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class User:
    """A user as the API shows it. Never carries the password hash."""

    id: str
    username: str
    roles: tuple[str, ...] = ()
    disabled: bool = False
    created_at: float = 0.0
    tokens_valid_after: float = 0.0
    email: str | None = None
    email_verified: bool = False


@dataclass(slots=True)
class SessionRecord:
    """A server-side session. ``token_hash`` is the SHA-256 of the cookie value."""

    id: str
    token_hash: str
    user_id: str
    csrf_token: str
    created_at: float
    last_seen_at: float
    expires_at: float
    idle_ttl: int
    remember: bool = False
    ip: str = ""
    user_agent: str = ""
    amr: str = "pwd"  # RFC 8176 methods of the sign-in, space-separated
    auth_time: float = 0.0  # when the user authenticated (0: at created_at)
    written_at: float = 0.0  # when last_seen_at was last stored (not a column)

    def __post_init__(self) -> None:
        if not self.written_at:
            self.written_at = self.last_seen_at
        if not self.auth_time:
            self.auth_time = self.created_at

    def deadline(self) -> float:
        """When the session ends unless used again: the earlier of idle and absolute."""
        return min(self.expires_at, self.last_seen_at + self.idle_ttl)

    def alive_at(self, now: float) -> bool:
        """Whether the session is still valid at ``now``."""
        return now < self.deadline()


@dataclass(slots=True)
class TokenFamily:
    """Every refresh token descended from one token login."""

    id: str
    user_id: str
    scope: str
    created_at: float
    last_seen_at: float
    expires_at: float
    revoked_at: float | None = None
    ip: str = ""
    user_agent: str = ""
    amr: str = "pwd"
    auth_time: float = 0.0


@dataclass(frozen=True, slots=True)
class SignInEntry:
    """One row of ``GET /auth/sessions``."""

    id: str
    kind: Literal["session", "token", "api_key"]
    created_at: float
    last_seen_at: float
    expires_at: float | None
    ip: str
    user_agent: str
    current: bool
    name: str | None = None  # an API key's name (None for sessions and token families)
    scopes: tuple[str, ...] | None = None  # an API key's scopes
    last_used_at: float | None = None  # an API key's last use (None: never used)


@dataclass(slots=True)
class ApiKeyRecord:
    """An API key (personal access token). ``digest`` is the SHA-256 of the key as given;
    the key itself is never stored. ``last_used_at`` is this process's knowledge (exact
    for the requests it served); ``written_at`` when it was last stored (not a column)."""

    id: str
    digest: str
    user_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: float
    expires_at: float | None = None
    last_used_at: float | None = None
    revoked_at: float | None = None
    written_at: float = 0.0
    # The effective scopes (the key's that the user's roles still grant) and the roles
    # they were computed for: recomputed when the roles change (not columns).
    effective: tuple[str, ...] = ()
    effective_for: tuple[str, ...] | None = None

    def alive_at(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    scope: str
    family_id: str
    claims: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling and how: the result of authenticating one request, and what the
    dependencies (``gate.session_user``, ``gate.token_user``, ``gate.user(...)``) return.

    ``auth`` is ``"session"``, ``"token"`` or ``"api_key"``; ``scopes`` what the credential
    grants; ``api_key`` the key record (API keys only);
    ``claims`` the verified access-token claims (tokens only, custom claims included);
    ``csrf_token`` the value unsafe cookie-authenticated requests must send."""

    user: User
    auth: Literal["session", "token", "api_key"]
    scopes: tuple[str, ...]
    session: SessionRecord | None = None
    claims: dict[str, Any] | None = None
    csrf_token: str | None = None
    via_cookie: bool = False
    api_key: ApiKeyRecord | None = None

    @property
    def amr(self) -> tuple[str, ...]:
        """How the user signed in (RFC 8176: ``pwd``, ``otp``, ``mfa``)."""
        if self.session is not None:
            return tuple(self.session.amr.split())
        value = (self.claims or {}).get("amr")
        return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) \
            else ()

    @property
    def auth_time(self) -> float | None:
        """When the user last authenticated (seconds since the epoch), if known."""
        if self.session is not None:
            return self.session.auth_time
        value = (self.claims or {}).get("auth_time")
        return float(value) if isinstance(value, int | float) else None

    @property
    def mfa(self) -> bool:
        """Whether the sign-in used a second factor."""
        return "mfa" in self.amr

    @property
    def id(self) -> str:
        """The user's id (the ``sub`` of their access tokens)."""
        return self.user.id

    @property
    def username(self) -> str:
        """The user's name."""
        return self.user.username

    @property
    def roles(self) -> tuple[str, ...]:
        """The user's roles (as stored now; a token's ``roles`` claim is in ``claims``)."""
        return self.user.roles


RevocationKind = Literal["session", "family", "jti", "user", "redis", "api_key"]


@dataclass(frozen=True, slots=True)
class Revocation:
    """One revocation event: what every process must stop trusting.

    ``session`` (value: the SHA-256 of the cookie value), ``family`` (a token family id),
    ``jti`` (one access token), ``user`` (drop the cached user: disabled, roles or password
    changed), ``redis`` (a new Redis session-cache epoch), ``api_key`` (value: the SHA-256
    of the key). ``str()`` is the form logged and
    published (``kind:value``); :meth:`parse` reads it back."""

    kind: RevocationKind
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"

    @classmethod
    def parse(cls, text: str) -> Revocation | None:
        kind, sep, value = text.partition(":")
        if not sep or kind not in ("session", "family", "jti", "user", "redis",
                                        "api_key"):
            return None
        return cls(kind, value)  # type: ignore[arg-type]
