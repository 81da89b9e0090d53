"""Revocation: one object logs nothing itself (the store writes the log row in the same
transaction as the change), applies each event in this process at once, and publishes it
to every other process — over the SQLite socket bus, Redis, or (PostgreSQL) the
``pg_notify`` that went out with the log row. The log stays the backstop every process
tails."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from authgate.clock import Clock
from authgate.hotstate import HotState
from authgate.models import Revocation
from authgate.store.records import Records
from authgate.store.socket_bus import SocketBus

if TYPE_CHECKING:
    from authgate.store.redis_backend import RedisBackend


@dataclass(eq=False)
class Revocations:
    records: Records
    hot: HotState
    clock: Clock
    socket_bus: SocketBus | None
    redis: RedisBackend | None

    async def publish(self, events: Iterable[Revocation]) -> None:
        """Apply ``events`` (already logged by the store) here, and tell the others."""
        events = list(events)
        if not events:
            return
        for event in events:
            self.hot.apply(event)
        if self.socket_bus is not None:
            self.socket_bus.publish(events)  # PostgreSQL: pg_notify went with the log rows
        if self.redis is not None:
            await self.redis.publish(events)

    async def access_token(self, claims: dict[str, Any], *, family: bool) -> None:
        """Deny one access token (until it expires); with ``family``, its whole family."""
        now = self.clock.now()
        events: list[Revocation] = []
        if await self.records.deny_jti(claims["jti"],
                                       min(float(claims["exp"]), now + 86400) + 60, now):
            events.append(Revocation("jti", claims["jti"]))
        if family and claims.get("sid"):
            events += await self.records.revoke_families(now, family_id=claims["sid"])
        await self.publish(events)

    async def others_of(self, user_id: str, *, keep_session: str | None = None,
                        keep_family: str | None = None) -> None:
        """End every session and token family of a user but the caller's own (a password
        changed, a sign-in method removed: who else holds one may be who took it)."""
        now = self.clock.now()
        events: list[Revocation] = []
        events += await self.records.delete_sessions(now, user_id=user_id, keep=keep_session)
        events += await self.records.revoke_families(now, user_id=user_id, keep=keep_family)
        await self.publish([*events, Revocation("user", user_id)])

    async def everything_of(self, user_id: str, **user_values: Any) -> None:
        """End every session, token family and access token of a user (and store
        ``user_values`` on the user in the same step: ``disabled=True``)."""
        now = self.clock.now()
        events: list[Revocation] = []
        events += await self.records.delete_sessions(now, user_id=user_id)
        events += await self.records.revoke_families(now, user_id=user_id)
        # Whole seconds: access tokens issued in an earlier second are refused by the
        # cutoff; those of this very second are covered by their family's revocation.
        await self.records.cut_off_user(user_id, float(int(now)), **user_values)
        await self.publish([*events, Revocation("user", user_id)])
