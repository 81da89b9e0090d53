"""The admin API's service: what ``authgate users ...`` does, for a caller holding the
``authgate:admin`` scope, through the same core functions (users, sessions, factors), each
action audited with the admin as its actor. Framework-free like the rest of ``core``; the
HTTP routes are ``authgate.web.admin_routes``.

Safety: an admin cannot disable or delete their own account, nor set roles on it that
take away ``authgate:admin`` (:class:`SelfLockout`, 409): the last admin cannot lock every
admin out through the API (the CLI still can, on purpose: it is the way back in)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from authgate.core.account import Account, clean_email
from authgate.core.api_keys import ApiKeys
from authgate.core.factors import Factors
from authgate.core.sessions import ENTRY_ID_CHARS, Sessions
from authgate.core.users import Users, clean_roles, decode_cursor, encode_cursor, page_limit
from authgate.errors import InsufficientScope, InvalidRequest, NotFound, SelfLockout
from authgate.events import Actor, AuthEvent
from authgate.models import ApiKeyRecord, Principal, SignInEntry, User
from authgate.settings import Settings
from authgate.store.audit import AuditRecords
from authgate.store.records import Records

#: The scope every admin route requires (a role grants it through ``ROLE_SCOPES``, or a
#: role of that very name).
ADMIN_SCOPE = "authgate:admin"
_AUDIT_CURSOR = "a1:"


@dataclass(frozen=True, slots=True)
class UserDetails:
    """One user as ``GET /admin/users/{id}`` shows them."""

    user: User
    totp: str  # "off" | "enrolling" | "on"
    recovery_codes_left: int
    last_sign_in: AuthEvent | None


@dataclass(eq=False)
class Admin:
    settings: Settings
    records: Records
    users: Users
    sessions: Sessions
    factors: Factors
    account: Account
    audit: AuditRecords
    api_keys: ApiKeys

    @staticmethod
    def check(principal: Principal) -> None:
        """The caller may use the admin API, else :class:`InsufficientScope` (403)."""
        if ADMIN_SCOPE not in principal.scopes:
            raise InsufficientScope(f"requires scope: {ADMIN_SCOPE}")

    async def user(self, user_id: Any) -> User:
        """The user with this id (read from the database), else :class:`NotFound`."""
        user = await self.records.get_user(_user_id(user_id))
        if user is None:
            raise NotFound("no such user")
        return user

    async def search(self, query: Any, cursor: Any, limit: Any
                     ) -> tuple[list[User], str | None]:
        return await self.users.search_users(query or "", cursor, limit or 50)

    async def details(self, user: User) -> UserDetails:
        totp, left = await self.factors.status(user.id)
        last = await self.audit.user_events(user.id, limit=1, types=("sign_in.succeeded",))
        return UserDetails(user, totp, left, last[0][1] if last else None)

    async def create(self, actor: Actor, username: Any, password: Any = None,
                     email: Any = None, roles: Any = None,
                     email_verified: bool = False) -> User:
        """A new user (as ``users create``). Without ``password`` the account has a random
        one nobody knows: the user sets theirs through forgot-password (with ``email``)
        or an admin sets one (``set_password``)."""
        clean = clean_roles(roles if roles is not None else [])
        if email_verified and email is None:
            raise InvalidRequest("email_verified needs an email")
        address = clean_email(email) if email is not None else None
        if password is None:
            user = await self.users.create_user(username, secrets.token_urlsafe(32),
                                                list(clean), check=False, actor=actor,
                                                email=address)
        else:
            if not isinstance(password, str):
                raise InvalidRequest("password must be a string")
            user = await self.users.create_user(username, password, list(clean),
                                                actor=actor, email=address)
        if email_verified:
            await self.account.mark_verified(user)
        return await self.user(user.id)

    async def update(self, actor: Actor, user: User, *, disabled: bool | None = None,
                     roles: Any = None) -> User:
        """Set roles and/or disable / enable (as ``users roles`` / ``disable`` /
        ``enable``); each takes effect like a revocation. A value equal to the current
        one changes nothing (and writes no event)."""
        clean = clean_roles(roles) if roles is not None else None
        if actor.user_id == user.id:
            if disabled:
                raise SelfLockout("an admin cannot disable their own account")
            if clean is not None and ADMIN_SCOPE not in self.settings.scopes_for(list(clean)):
                raise SelfLockout("an admin cannot take away their own admin access")
        if clean is not None and clean != user.roles:
            await self.users.set_roles(user, list(clean), actor=actor)
        if disabled is not None and disabled != user.disabled:
            await self.users.set_disabled(user, disabled, actor=actor)
        return await self.user(user.id)

    async def delete(self, actor: Actor, user: User) -> None:
        if actor.user_id == user.id:
            raise SelfLockout("an admin cannot delete their own account")
        await self.users.delete_user(user, actor=actor)

    async def set_password(self, actor: Actor, user: User, password: Any) -> None:
        """As ``users set-password``: the policy applies; every sign-in of the user ends."""
        if not isinstance(password, str):
            raise InvalidRequest("password must be a string")
        await self.users.set_password(user, password, actor=actor)

    async def mfa_reset(self, actor: Actor, user: User) -> None:
        """As ``users mfa-reset``: the second factors go and every sign-in ends."""
        await self.factors.reset(user, actor=actor)

    async def create_api_key(self, principal: Principal, actor: Actor, user: User,
                             name: Any, scopes: Any = None, expires_in: Any = None
                             ) -> tuple[str, ApiKeyRecord]:
        """A key for ``user`` (scopes at most what the user's roles grant), made by an admin
        who signed in: an API key, even an admin's, cannot make keys."""
        self.api_keys.require_interactive(principal)
        return await self.api_keys.create(user, name, scopes, expires_in, actor=actor,
                                          ip=actor.ip, user_agent=actor.user_agent)

    async def sign_ins(self, principal: Principal, user: User) -> list[SignInEntry]:
        """The user's one list (the admin's own entry is ``current`` in their own)."""
        return await self.sessions.sign_ins(principal if principal.user.id == user.id
                                            else user)

    async def revoke(self, actor: Actor, user: User, entry_id: str | None = None) -> None:
        """End one entry of the user's list (:class:`NotFound` if not theirs), or all."""
        if entry_id is None:  # everything in the list: the API keys too
            await self.sessions.logout_everywhere(user, actor=actor)
            await self.api_keys.revoke_all(user.id, actor=actor)
        else:
            await self.sessions.revoke_sign_in(user, entry_id, actor=actor)

    async def events(self, user_id: str, cursor: Any, limit: Any
                     ) -> tuple[list[tuple[int, AuthEvent]], str | None]:
        """The user's audit events newest first, a page, and the next page's cursor."""
        size = page_limit(limit or 50)
        before = None
        if cursor:
            key = decode_cursor(cursor, _AUDIT_CURSOR)
            if not key.isdigit() or not key.isascii() or len(key) > 18:
                raise InvalidRequest("cursor is not one this server gave")
            before = int(key)
        found = await self.audit.user_events(_user_id(user_id), before=before,
                                             limit=size + 1)
        more = len(found) > size
        found = found[:size]
        return found, encode_cursor(str(found[-1][0]), _AUDIT_CURSOR) if more else None


def _user_id(user_id: Any) -> str:
    """A string that may be a user id (a 404 otherwise: nothing odd reaches the query)."""
    if not isinstance(user_id, str) or not 1 <= len(user_id) <= 64 \
            or not set(user_id) <= ENTRY_ID_CHARS:
        raise NotFound("no such user")
    return user_id
