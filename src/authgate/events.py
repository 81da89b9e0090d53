"""Security events: one catalogue, emitted once, delivered to every sink.

``Events.emit`` is synchronous and cheap (it never waits on I/O, so the request that caused
the event is not slowed): it writes the log line (logger ``authgate.audit``, with the
event's fields) and queues the event. A background task then stores the queued events in
the ``audit_events`` table, with a webhook delivery for each when ``WEBHOOK_URL`` is set
(one transaction for both), and hands them to the embedder's ``on_event`` hooks. A failing
hook is logged and never breaks a sign-in.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from authgate.clock import Clock
from authgate.tasks import cancel

audit = logging.getLogger("authgate.audit")
log = logging.getLogger("authgate")

#: Every event authgate emits, by name, with what it means.
CATALOGUE: dict[str, str] = {
    "sign_in.succeeded": "a sign-in succeeded (password or passkey; session or token grant)",
    "sign_in.failed": "a sign-in failed (unknown user, wrong password, disabled user, "
                      "refused passkey)",
    "sign_in.throttled": "a sign-in was refused by the throttle",
    "credentials.guessing": "an address sent CREDENTIAL_GUESS_LIMIT refused credentials "
                            "(sessions, tokens, API keys) in CREDENTIAL_GUESS_WINDOW: blocked",
    "sign_out": "a session or token family was ended by its holder (logout)",
    "sign_out.everywhere": "every session and token family of a user was ended",
    "session.revoked": "one entry of a user's sign-in list was revoked",
    "family.revoked": "a refresh-token family was revoked (RFC 7009 revoke)",
    "refresh.reuse_detected": "a used refresh token was presented again: its family died",
    "password.changed": "a password was changed (by the user or an operator)",
    "user.created": "a user was created (registration or operator)",
    "user.disabled": "a user was disabled: every session and token ended",
    "user.enabled": "a user was enabled again",
    "user.roles_changed": "a user's roles were set",
    "mfa.enabled": "a second factor (an authenticator app) was activated",
    "mfa.disabled": "a second factor was removed",
    "mfa.failed": "a wrong second-factor code was sent for a pending sign-in",
    "mfa.recovery_code_used": "a recovery code was used (it works once)",
    "user.deleted": "a user was deleted with everything it held (by themselves or an admin)",
    "passkey.added": "a passkey was registered",
    "passkey.removed": "a passkey was deleted",
    "passkey.counter_mismatch": "a passkey's signature counter did not move forward (a cloned "
                                "authenticator?): the sign-in was refused",
    "email.verification_sent": "a verification mail was queued",
    "email.verified": "an email address was verified (its link was used)",
    "email.change_requested": "a change of address was asked for (confirmation mailed)",
    "email.changed": "an email address change was confirmed (the new address's link)",
    "password.reset_requested": "a password-reset mail was queued (forgot password)",
    "password.reset": "a password was reset with a mailed token: every sign-in ended",
    "api_key.created": "an API key was created (its name and scopes; never the key)",
    "api_key.revoked": "an API key was revoked (by its user, an operator or RFC 7009)",
    "key.rotated": "a new signing key was added",
    "key.exported": "a token-encryption private key was exported (keys export-decryption-key)",
}

Hook = Callable[["AuthEvent"], "Awaitable[None] | None"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who caused an event, when it is more than a word: ``kind`` (the event's ``actor``:
    ``user``, ``operator``, ``admin``, ``system``), the acting user's id (``admin``: the
    admin's; stored in the event's data as ``actor_id``) and where the request came from.
    The services take ``actor: str | Actor``; a plain string is ``Actor(kind)``."""

    kind: str = "operator"
    user_id: str | None = None
    ip: str = ""
    user_agent: str = ""


@dataclass(frozen=True, slots=True)
class AuthEvent:
    """One security event, as stored, listed, sent to webhooks and to ``on_event``.

    ``type`` is a :data:`CATALOGUE` name; ``user_id`` the user it concerns (if any);
    ``actor`` who caused it (``user``, ``operator``, ``admin`` or ``system``; an admin's id
    is ``data["actor_id"]``); ``data`` the ids involved (session, family, ...). Nothing
    secret is ever in an event."""

    type: str
    at: float
    user_id: str | None = None
    actor: str = "user"
    ip: str = ""
    user_agent: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the audit list and of a webhook's ``data``."""
        return {"type": self.type, "at": self.at, "user_id": self.user_id,
                "actor": self.actor, "ip": self.ip, "user_agent": self.user_agent,
                **({"data": self.data} if self.data else {})}


class EventStore(Protocol):
    """Where queued events go (``authgate.store.audit.AuditRecords``)."""

    async def store_events(self, events: list[AuthEvent], webhooks: bool) -> None:
        """Store ``events`` (and, with ``webhooks``, a delivery each) in one transaction."""
        ...


class Events:
    """Emit, log, store and hand out security events."""

    def __init__(self, store: EventStore | None, clock: Clock, *, webhooks: bool = False,
                 hooks: list[Hook] | None = None,
                 counters: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.clock = clock
        self.webhooks = webhooks
        self.hooks = list(hooks or [])
        self.counters = counters  # called inline with each event's type (metrics)
        self._queue: list[AuthEvent] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def emit(self, type: str, *, user_id: str | None = None, actor: str | Actor = "user",
             ip: str = "", user_agent: str = "", level: int = logging.INFO,
             **data: Any) -> AuthEvent:
        """Record one event: a log line now, storage and hooks shortly. An :class:`Actor`
        gives the event its ``actor``, ``actor_id`` and (unless given) ``ip`` and
        ``user_agent``."""
        if isinstance(actor, Actor):
            data.setdefault("actor_id", actor.user_id)
            ip = ip or actor.ip
            user_agent = user_agent or actor.user_agent
            actor = actor.kind
        event = AuthEvent(type=type, at=self.clock.now(), user_id=user_id, actor=actor,
                          ip=ip, user_agent=user_agent[:512],
                          data={k: v for k, v in data.items() if v is not None})
        audit.log(level, CATALOGUE.get(type, type), extra={
            "event": type, "user_id": user_id, "actor": actor, "ip": ip, **event.data})
        if self.counters is not None:
            self.counters(type)
        self._queue.append(event)
        self._wake.set()
        return event

    async def flush(self) -> None:
        """Store what is queued and run the hooks (the CLI calls this before it exits)."""
        events, self._queue = self._queue, []
        if not events:
            return
        if self.store is not None:
            try:
                await self.store.store_events(events, self.webhooks)
            except Exception as exc:  # never lose the loop; the log line has the event
                log.error("storing %d audit event(s) failed: %s", len(events),
                          type(exc).__name__)
        for event in events:
            for hook in self.hooks:
                try:
                    result = hook(event)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("on_event hook failed for %s", event.type)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="authgate-events")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0.05)  # batch the events of a burst into one transaction
            await self.flush()
