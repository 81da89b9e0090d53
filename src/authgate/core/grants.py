"""The token endpoint's grants (password, refresh), access-token checks, RFC 7009
revocation, and the key reloads a token from another instance can call for."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from authgate.clock import Clock
from authgate.core.credentials import Macs, digest, new_id, new_secret
from authgate.core.revocation import Revocations
from authgate.core.signin import SignIn
from authgate.core.users import Users
from authgate.errors import CsrfError, InvalidGrant, InvalidMfaToken, InvalidToken
from authgate.events import Events
from authgate.hotstate import HotState, shared_claims
from authgate.keys import KeyRing
from authgate.metrics import Metrics
from authgate.models import Principal, Revocation, TokenFamily, TokenPair, User
from authgate.settings import Settings
from authgate.store.records import Records
from authgate.tokens import AccessTokens

if TYPE_CHECKING:
    from authgate.core.api_keys import ApiKeys
    from authgate.core.factors import Factors
    from authgate.core.passkeys import Passkeys

ExtraClaims = Callable[[User], dict[str, Any] | Awaitable[dict[str, Any]]]


@dataclass(eq=False)
class Grants:
    settings: Settings
    clock: Clock
    records: Records
    hot: HotState
    keys: KeyRing
    tokens: AccessTokens
    users: Users
    signin: SignIn
    revocations: Revocations
    events: Events
    metrics: Metrics
    macs: Macs
    last_seen: Callable[[str], float | None]
    extra_claims: ExtraClaims | None = None
    factors: Factors | None = None
    api_keys: ApiKeys | None = None
    passkeys: Passkeys | None = None
    _keys_loaded_at: float = field(default=0.0, init=False)

    async def password_grant(self, username: Any, password: Any, scope: Any = None, *,
                             ip: str = "", user_agent: str = "",
                             device: str | None = None) -> TokenPair:
        user = await self.signin.check_password(username, password, ip, device=device)
        if self.factors is not None and await self.factors.active(user.id):
            raise await self.factors.required(user, "pwd", flow="token",
                                              scope=self._grant_scope(user, scope, True))
        granted = self._grant_scope(user, scope, False)
        return await self._new_family(user, granted, ip, user_agent, "pwd")

    async def mfa_grant(self, mfa_token: Any, code: Any, *, ip: str = "",
                        user_agent: str = "", passkey: Any = None) -> TokenPair:
        """``urn:authgate:grant-type:mfa``: finish a password grant that answered
        ``mfa_required`` with a TOTP or recovery code, or a passkey assertion."""
        if self.factors is None:
            raise InvalidGrant()
        try:
            done = await self.factors.finish(mfa_token, code, "token", ip, passkey=passkey)
        except InvalidMfaToken as exc:
            raise InvalidGrant(exc.detail, reason=exc.reason) from None
        scope = str(done.data.get("scope", ""))
        # the roles may have changed in the 5 minutes: never more than they grant now
        allowed = set(self.settings.scopes_for(list(done.user.roles)))
        granted = " ".join(s for s in scope.split() if s in allowed)
        return await self._new_family(done.user, granted, ip, user_agent, done.amr,
                                      done.auth_time)

    async def passkey_grant(self, credential: Any, scope: Any = None, *, ip: str = "",
                            user_agent: str = "") -> TokenPair:
        """``urn:authgate:grant-type:passkey``: a passwordless sign-in with a passkey
        assertion over ``GET /auth/passkeys/login/options``' challenge (two factors: the
        MFA_REQUIRED_ROLES scopes are granted)."""
        if self.passkeys is None:
            raise InvalidGrant()
        from authgate.errors import InvalidPasskey

        try:
            done = await self.passkeys.login(credential, ip)
        except InvalidPasskey as exc:
            raise InvalidGrant("the passkey did not sign you in", reason=exc.reason) from None
        granted = self._grant_scope(done.user, scope, True)
        return await self._new_family(done.user, granted, ip, user_agent, f"{done.amr} mfa")

    async def _new_family(self, user: User, granted: str, ip: str, user_agent: str,
                          amr: str, auth_time: float = 0.0) -> TokenPair:
        now = self.clock.now()
        s = self.settings
        fam = TokenFamily(id=new_id(), user_id=user.id, scope=granted, created_at=now,
                          last_seen_at=now, expires_at=now + s.refresh_token_ttl,
                          ip=ip[:64], user_agent=user_agent[:512], amr=amr,
                          auth_time=auth_time or now)
        refresh = new_secret()
        evicted = await self.records.create_family(fam, digest(refresh), fam.expires_at,
                                                   s.max_sessions_per_user, now,
                                                   self.last_seen)
        await self.revocations.publish(evicted)
        self.events.emit("sign_in.succeeded", user_id=user.id, ip=ip, user_agent=user_agent,
                         method="token", family_id=fam.id, amr=amr)
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
            if not self.macs.check("at-csrf", fam.id, csrf):
                raise CsrfError()
            # Two tabs of one browser refresh with the same cookie: the loser gets a
            # sibling instead of revoking the family (the cookie jar keeps one of them).
            grace = max(grace, self.settings.cookie_refresh_reuse_grace)
        new = new_secret()
        outcome, fam = await self.records.rotate_refresh(
            digest(refresh_token), digest(new), now, grace, self.settings.refresh_idle_ttl)
        if outcome == "reuse" and fam is not None:
            await self.revocations.publish([Revocation("family", fam.id)])
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
        mfa = "mfa" in fam.amr.split()
        scope = self._grant_scope(user, fam.scope, mfa) if fam.scope else ""
        return await self._pair(user, fam, new, now, scope)

    async def _pair(self, user: User, fam: TokenFamily, refresh: str, now: float,
                    scope: str | None = None) -> TokenPair:
        extra = await self.claims_for(user) if self.extra_claims else None
        granted = fam.scope if scope is None else scope
        token, claims = self.tokens.issue(sub=user.id, scope=granted, roles=list(user.roles),
                                          family_id=fam.id, now=now, extra=extra,
                                          amr=fam.amr.split(),
                                          auth_time=int(fam.auth_time or fam.created_at))
        self.metrics.count("tokens_issued")
        return TokenPair(access_token=token, expires_in=self.settings.access_token_ttl,
                         refresh_token=refresh, scope=granted, family_id=fam.id, claims=claims)

    async def claims_for(self, user: User) -> dict[str, Any]:
        """The application's extra claims for ``user`` (``extra_claims``, sync or async)."""
        assert self.extra_claims is not None
        value = self.extra_claims(user)
        if inspect.isawaitable(value):
            value = await value
        return dict(value)

    def _grant_scope(self, user: User, requested: Any, mfa: bool = False) -> str:
        allowed = self.settings.scopes_for(list(user.roles), mfa)
        if requested is None or requested == "":
            return " ".join(allowed)
        if not isinstance(requested, str):
            raise InvalidGrant("scope must be a space-separated string")
        return " ".join(s for s in dict.fromkeys(requested.split()) if s in allowed)

    async def token_principal(self, token: str, *, via_cookie: bool = False) -> Principal:
        """Verify an access token and check it is not revoked. Raises :class:`InvalidToken`.
        A token verified before is not verified again until its ``exp``; the revocation
        checks run every time, from memory."""
        if time.monotonic() > self.hot.fresh_until:  # a revocation source fell silent
            await self.hot.ensure_fresh()
        now = self.clock.now()
        claims = self.hot.verified.get(token)
        self.metrics.count("cache_lookups", "token:miss" if claims is None else "token:hit")
        if claims is None or now >= claims["exp"] + self.settings.token_leeway:
            try:
                verified = self.tokens.verify(token, now)
            except InvalidToken:
                if not await self._reload_keys_for(token):
                    raise
                verified = self.tokens.verify(token, now)
            claims = shared_claims(verified)
            self.hot.verified.put(token, claims)
        if claims["jti"] in self.hot.denied_jtis or claims.get("sid") in \
                self.hot.revoked_families:
            raise InvalidToken(reason="revoked")
        user = await self.users.get_user(claims["sub"])
        made = self.hot.token_principals.get(token)
        if made is not None and made.claims is claims and made.user is user \
                and made.via_cookie == via_cookie:
            return made  # the checks below passed for these very claims and user
        if user is None or user.disabled:
            raise InvalidToken(reason="user disabled or deleted")
        if claims["iat"] < user.tokens_valid_after:
            raise InvalidToken(reason="issued before the user's cutoff")
        if tuple(claims.get("roles") or ()) != user.roles:  # issued before a role change
            raise InvalidToken(reason="roles changed")
        scopes = tuple(claims.get("scope", "").split())
        csrf = self.token_csrf(claims.get("sid") or claims["jti"]) if via_cookie else None
        return self.hot.token_principals.put(token, Principal(
            user=user, auth="token", scopes=scopes, claims=claims, csrf_token=csrf,
            via_cookie=via_cookie))

    def token_csrf(self, family_id: str) -> str:
        """The CSRF value of a token family whose tokens travel in cookies: an HMAC of the
        family id under a server secret, so it is checked with no server state and stays the
        same across refreshes."""
        return self.macs.mac("at-csrf", family_id)

    async def revoke_token(self, token: Any, *, ip: str | None = None) -> None:
        """RFC 7009: revoke a refresh token (its family and that family's access tokens) or
        an access token (its ``jti``). Unknown or invalid tokens are silently ignored.
        ``ip``: the client's address, limited to ``REVOKE_LIMIT`` per ``REVOKE_WINDOW``."""
        if ip is not None:
            await self.signin.limit("rev", ip, self.settings.revoke_limit,
                                    self.settings.revoke_window)
        if not isinstance(token, str) or not token or len(token) > 8192:
            return
        now = self.clock.now()
        if self.api_keys is not None and token.startswith("ag_"):
            await self.api_keys.revoke_key(token)  # anyone holding a key may end it
            return
        if "." not in token:
            fam = await self.records.refresh_family(digest(token))
            if fam is not None:
                await self.revocations.publish(
                    await self.records.revoke_families(now, family_id=fam.id))
                self.events.emit("family.revoked", user_id=fam.user_id, family_id=fam.id)
            return
        try:
            claims = self.tokens.verify(token, now)
        except InvalidToken:
            return
        if claims["jti"] in self.hot.denied_jtis:  # denied already: a no-op, no write
            return
        await self.revocations.access_token(claims, family=False)

    async def _reload_keys_for(self, token: str) -> bool:
        """A token names a key this process does not know (another instance rotated, or
        generated it first): reload keys, at most every 5 s. True when reloaded."""
        now = time.monotonic()
        if now - self._keys_loaded_at < 5:
            return False
        self._keys_loaded_at = now
        return await self.reload_keys()

    async def reload_keys(self) -> bool:
        """Reload the key ring; True when its set of keys changed. A key that left the ring
        takes the verified-token cache with it: its tokens must not outlive it there."""
        before = self.keys.kids
        await self.keys.load(self.clock.now(), create=False)
        after = self.keys.kids
        if before - after:
            self.hot.verified.clear()
        return after != before
