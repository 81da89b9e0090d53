"""Users: create, register, look up, disable, set password and roles."""

from __future__ import annotations

import base64
import binascii
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from authgate.clock import Clock
from authgate.core.credentials import new_id
from authgate.core.revocation import Revocations
from authgate.core.signin import MAX_USERNAME_LENGTH, SignIn
from authgate.errors import InvalidRequest, RegistrationClosed
from authgate.events import Actor, Events
from authgate.hotstate import HotState, SingleFlight
from authgate.models import Revocation, User
from authgate.passwords import PasswordHasher, check_policy
from authgate.settings import Settings
from authgate.store.records import Records

#: Users per page of :meth:`Users.search_users`: by default, at most.
DEFAULT_PAGE = 50
MAX_PAGE = 200
_CURSOR_PREFIX = "u1:"


@dataclass(eq=False)
class Users:
    settings: Settings
    clock: Clock
    records: Records
    hot: HotState
    hasher: PasswordHasher
    events: Events
    revocations: Revocations
    signin: SignIn
    _reads: SingleFlight[str, User | None] = field(default_factory=SingleFlight, init=False)

    async def create_user(self, username: str, password: str, roles: list[str] | None = None,
                          *, check: bool = True, actor: str | Actor = "operator",
                          email: str | None = None) -> User:
        """``email``: an address already normalised (``core.account.clean_email``),
        unverified."""
        username = clean_username(username)
        clean = clean_roles(roles or [])
        if check:
            check_policy(password, min_length=self.settings.password_min_length,
                         username=username)
        user = User(id=new_id(), username=username, roles=clean,
                    created_at=self.clock.now(), email=email)
        created = await self.records.create_user(user, await self.hasher.hash(password))
        self.events.emit("user.created", user_id=user.id, actor=actor)
        return created

    async def register(self, username: str, password: str, *, ip: str | None = None,
                       email: str | None = None) -> User:
        """Open registration. ``ip``: the client's address, limited to
        ``REGISTRATION_LIMIT`` per ``REGISTRATION_WINDOW`` (None: not from the network)."""
        if not self.settings.open_registration:
            raise RegistrationClosed()
        if ip is not None:
            await self.signin.limit("reg", ip, self.settings.registration_limit,
                                    self.settings.registration_window)
        return await self.create_user(username, password, actor="user", email=email)

    async def get_user(self, user_id: str) -> User | None:
        cached = self.hot.users.get(user_id)
        if cached is not None:
            return cached
        return await self._reads.run(user_id, lambda: self._read_and_cache(user_id),
                                     self.hot.generation)

    async def _read_and_cache(self, user_id: str) -> User | None:
        generation = self.hot.generation
        user = await self.records.get_user(user_id)
        # A revocation applied while the read was in flight: do not cache what it replaced.
        if user is not None and self.hot.generation == generation:
            self.hot.users.put(user_id, user)
        return user

    async def list_users(self) -> list[User]:
        return await self.records.list_users()

    async def search_users(self, query: Any = "", cursor: Any = None,
                           limit: Any = DEFAULT_PAGE) -> tuple[list[User], str | None]:
        """One page of users in username order whose username or address contains
        ``query`` (case-insensitive), and the opaque cursor of the next page (None: this
        is the last). ``cursor``: a previous page's; ``limit``: 1 to :data:`MAX_PAGE`."""
        if not isinstance(query, str) or len(query) > 320 or _controls(query):
            raise InvalidRequest("q must be at most 320 characters, without control "
                                 "characters")
        limit = page_limit(limit)
        after = decode_cursor(cursor) if cursor else None
        found = await self.records.search_users(query.strip(), after, limit + 1)
        more = len(found) > limit
        found = found[:limit]
        return [u for _, u in found], encode_cursor(found[-1][0]) if more else None

    async def user_by_name(self, username: str) -> User | None:
        found = await self.records.user_with_hash(username)
        return found[0] if found else None

    async def set_disabled(self, user: User, disabled: bool, *,
                           actor: str | Actor = "operator") -> None:
        """Disable (ending every session, token family and access token) or enable."""
        if disabled:
            await self.revocations.everything_of(user.id, disabled=True)
        else:
            # Logged: a process without a bus to this one (PostgreSQL without Redis) drops
            # its cached, disabled copy of the user at its next poll of the log.
            await self.records.update_user(user.id, logged_at=self.clock.now(),
                                           disabled=False)
            await self.revocations.publish([Revocation("user", user.id)])
        self.events.emit("user.disabled" if disabled else "user.enabled", user_id=user.id,
                         actor=actor)

    async def delete_user(self, user: User, *, actor: str | Actor = "operator") -> None:
        """Delete the user and everything they hold; their sessions and tokens end at
        once, on every process."""
        await self.revocations.everything_of(user.id)
        await self.records.delete_user(user.id, logged_at=self.clock.now())
        await self.revocations.publish([Revocation("user", user.id)])
        self.events.emit("user.deleted", user_id=user.id, actor=actor)

    async def set_password(self, user: User, password: str, *, keep_session: str | None = None,
                           keep_family: str | None = None,
                           actor: str | Actor | None = None) -> None:
        """Set a new password and end every other session and token family, and every
        unused password-reset token."""
        check_policy(password, min_length=self.settings.password_min_length,
                     username=user.username)
        new_hash = await self.hasher.hash(password)
        now = self.clock.now()
        await self.records.update_user(user.id, password_hash=new_hash)
        await self.records.end_mail_tokens(user.id, "reset", now)
        await self.revocations.others_of(user.id, keep_session=keep_session,
                                         keep_family=keep_family)
        self.events.emit("password.changed", user_id=user.id,
                         actor=actor or ("user" if keep_session or keep_family else "operator"))

    async def set_roles(self, user: User, roles: list[str], *,
                        actor: str | Actor = "operator") -> None:
        """Set the user's roles to exactly ``roles``. Their access tokens issued before end
        (the scopes in them came from the old roles); sessions, whose scopes come from the
        user's current roles, see the change on every process within the revocation bound;
        a refresh derives its scope from the new roles."""
        clean = clean_roles(roles)
        # Whole seconds as for a password change; a token of this very second carrying the
        # old roles is refused by the access-token check's roles comparison.
        await self.records.cut_off_user(user.id, float(int(self.clock.now())), roles=clean)
        await self.revocations.publish([Revocation("user", user.id)])
        self.events.emit("user.roles_changed", user_id=user.id, actor=actor,
                         roles=",".join(clean))


def clean_roles(roles: Any) -> tuple[str, ...]:
    """Roles as stored: each 1 to 64 characters without spaces, duplicates dropped."""
    if not isinstance(roles, list | tuple) or not all(isinstance(r, str) for r in roles):
        raise InvalidRequest("roles must be a list of strings")
    if len(roles) > 100:
        raise InvalidRequest("at most 100 roles")
    clean = tuple(dict.fromkeys(r.strip() for r in roles))
    if any(not r or len(r) > 64 or not r.isprintable() or any(c.isspace() for c in r)
           for r in clean):
        raise InvalidRequest("a role is 1 to 64 printable characters without spaces")
    return clean


def page_limit(limit: Any) -> int:
    """A page size from a query parameter (a number 1 to :data:`MAX_PAGE`)."""
    if isinstance(limit, str):
        if not limit.isdigit() or len(limit) > 4:  # (isdigit alone takes "²")
            raise InvalidRequest(f"limit must be a number from 1 to {MAX_PAGE}")
        limit = int(limit) if limit.isascii() else 0
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be a number from 1 to {MAX_PAGE}")
    return limit


def encode_cursor(key: str, kind: str = _CURSOR_PREFIX) -> str:
    """The opaque cursor (base64url) of the page after the row whose key is ``key``;
    ``kind``: which listing (a cursor of one is refused by another)."""
    return base64.urlsafe_b64encode((kind + key).encode()).decode().rstrip("=")


def decode_cursor(cursor: Any, kind: str = _CURSOR_PREFIX) -> str:
    """The key an :func:`encode_cursor` cursor of ``kind`` carries; anything else is
    :class:`InvalidRequest`."""
    bad = InvalidRequest("cursor is not one this server gave")
    if not isinstance(cursor, str) or len(cursor) > 1024 or not cursor.isascii():
        raise bad
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError):
        raise bad from None
    key = text[len(kind):]
    if not text.startswith(kind) or encode_cursor(key, kind) != cursor or _controls(key):
        raise bad
    return key


def _controls(text: str) -> bool:
    """Whether ``text`` holds a control (or other category C) character: never in a
    username, and PostgreSQL refuses a NUL in any string."""
    return any(unicodedata.category(c).startswith("C") for c in text)


def clean_username(username: Any) -> str:
    if not isinstance(username, str):
        raise InvalidRequest("username must be a string")
    name = unicodedata.normalize("NFC", username).strip()
    if not 1 <= len(name) <= MAX_USERNAME_LENGTH:
        raise InvalidRequest(f"username must be 1 to {MAX_USERNAME_LENGTH} characters")
    if _controls(name):
        raise InvalidRequest("username must not contain control characters")
    return name
