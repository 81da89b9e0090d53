"""``AuthGate``: the engine as a FastAPI/Starlette user sees it.

    gate = AuthGate(Settings(database_url="sqlite:///app.db"))
    app = FastAPI(lifespan=gate.lifespan)
    app.include_router(gate.router)

    @app.get("/home")
    async def home(user: Principal = Depends(gate.session_user)): ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any

from authgate.clock import Clock
from authgate.engine import Engine, ExtraClaims
from authgate.errors import AuthGateError
from authgate.events import Hook
from authgate.models import Principal
from authgate.settings import Settings

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from authgate.core.account import Account
    from authgate.core.admin import Admin
    from authgate.core.api_keys import ApiKeys
    from authgate.core.factors import Factors
    from authgate.core.grants import Grants
    from authgate.core.sessions import Sessions
    from authgate.core.users import Users
    from authgate.keys import KeyRing
    from authgate.mail.sender import MailSender
    from authgate.store.audit import AuditRecords

Dependency = Callable[..., Awaitable[Principal]]


class AuthGate:
    """The composition root for an app: settings, engine, router, lifespan, dependencies.

    :param settings: what to connect to and how long things live (``Settings()`` reads the
        ``AUTHGATE_*`` environment).
    :param extra_claims: ``fn(user) -> dict`` (sync or async) of custom claims added to
        every access token; registered claim names are refused at start-up.
    :param clock: an injected clock (tests).
    :param on_event: ``fn(event)`` (sync or async) called with every security event
        (:class:`authgate.events.AuthEvent`) shortly after it happens; an exception in it
        is logged and never breaks the request that caused the event.
    """

    def __init__(self, settings: Settings | None = None, *,
                 extra_claims: ExtraClaims | None = None, clock: Clock | None = None,
                 on_event: Hook | None = None) -> None:
        self.settings = settings if settings is not None else Settings()
        self.engine = Engine(self.settings, clock=clock, extra_claims=extra_claims,
                             on_event=on_event)

    @asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """Starts the engine (migrations, keys, revocation watcher) and stops it."""
        async with self:
            yield

    async def __aenter__(self) -> AuthGate:
        """``async with AuthGate(settings) as gate:`` for scripts and the CLI: started (a
        start that fails half-way is undone), then stopped."""
        await self.start()
        return self

    async def start(self, *, redis_required: bool = True) -> None:
        """Migrate, load keys, start the revocation watcher (what :attr:`lifespan` does); a
        start that fails half-way is undone. ``redis_required=False`` (the CLI) goes on
        without an unreachable Redis."""
        try:
            await self.engine.start(redis_required=redis_required)
        except BaseException:
            await self.engine.stop()
            raise

    async def stop(self) -> None:
        """Stop the background tasks and close the connections."""
        await self.engine.stop()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- the services, for scripts and operators' tools -------------------------------------

    @property
    def users(self) -> Users:
        """Create, look up, disable users; set passwords and roles."""
        return self.engine.users

    @property
    def sessions(self) -> Sessions:
        """Log in, look up, rotate and end cookie sessions; list a user's sign-ins."""
        return self.engine.sessions

    @property
    def factors(self) -> Factors:
        """Second factors: enrol, confirm, remove an authenticator app; check codes."""
        return self.engine.factors

    @property
    def grants(self) -> Grants:
        """Token grants (password, refresh), access-token checks, RFC 7009 revocation."""
        return self.engine.grants

    @property
    def api_keys(self) -> ApiKeys:
        """API keys (personal access tokens): create for a user, list, revoke."""
        return self.engine.api_keys

    @property
    def account(self) -> Account:
        """The account lifecycle by mail: verification, address change, forgot / reset
        password, deletion."""
        return self.engine.account

    @property
    def admin(self) -> Admin:
        """The admin API's service: user search, create, update, delete, sessions and
        audit for a caller with the ``authgate:admin`` scope (what the CLI's ``users``
        commands do, audited with the admin as actor)."""
        return self.engine.admin

    @property
    def mail(self) -> MailSender:
        """The mail outbox and its sender (``.outbox.pending``, ``.renderer``,
        ``.transport``)."""
        return self.engine.mailer

    @property
    def keys(self) -> KeyRing:
        """The signing keys (``.encryption``: the token-encryption keys): list, rotate,
        export."""
        return self.engine.keys

    @property
    def audit(self) -> AuditRecords:
        """The audit trail and the webhook outbox."""
        return self.engine.audit

    @property
    def clock(self) -> Clock:
        """The clock every service reads (the one given to the constructor, or real time)."""
        return self.engine.clock

    def emit(self, event_type: str, **data: Any) -> None:
        """Record a security event (audit trail, logs, webhooks, ``on_event``)."""
        self.engine.events.emit(event_type, **data)

    async def purge(self) -> dict[str, int]:
        """Delete expired sessions, refresh tokens, denylist entries and old audit events."""
        return await self.engine.purge()

    @cached_property
    def router(self) -> APIRouter:
        """The contract's ``/auth/*`` API and ``/.well-known/jwks.json`` as an APIRouter."""
        from authgate.web.router import build_router

        return build_router(self.engine)

    @cached_property
    def admin_router(self) -> APIRouter:
        """The admin API (``/admin/*``, callers with the ``authgate:admin`` scope) as an
        APIRouter; ``authgate serve`` includes it, an app embedding authgate opts in with
        ``app.include_router(gate.admin_router)``."""
        from authgate.web.admin_routes import build_admin_router

        return build_admin_router(self.engine)

    @cached_property
    def asgi_app(self) -> FastAPI:
        """The ``/auth/*`` API as an ASGI app of its own, for apps that are not FastAPI:
        ``Mount("", app=gate.asgi_app)`` in a Starlette app (its lifespan stays yours:
        pass ``lifespan=gate.lifespan`` to the outer app)."""
        from fastapi import FastAPI

        api = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        api.include_router(self.router)
        return api

    @cached_property
    def pages(self) -> list[BaseRoute]:
        """The ``/login`` and ``/account`` pages as Starlette routes:
        ``app.router.routes.extend(gate.pages)``."""
        from authgate.web.pages import build_pages

        return build_pages(self.engine)

    @cached_property
    def _deps(self) -> dict[str, Dependency]:
        from authgate.web.deps import build_dependencies

        return build_dependencies(self)

    @property
    def session_user(self) -> Dependency:
        """FastAPI dependency: the caller authenticated by the session cookie only."""
        return self._deps["session"]

    @property
    def token_user(self) -> Dependency:
        """FastAPI dependency: the caller authenticated by an access token only (the
        ``Authorization: Bearer`` header, or the access-token cookie) or by an API key
        (``Authorization: Bearer ag_…``; then ``principal.auth == "api_key"``)."""
        return self._deps["token"]

    @property
    def any_user(self) -> Dependency:
        """FastAPI dependency: the caller by bearer token, API key or session cookie."""
        return self._deps["any"]

    def user(self, scopes: Sequence[str] = (), via: str = "any", *, mfa: bool = False,
             max_age: int | None = None) -> Dependency:
        """FastAPI dependency: the caller (``via`` = ``any``, ``session`` or ``token``), who
        must hold every scope in ``scopes`` (403 ``insufficient_scope`` otherwise).

        Step-up (RFC 9470): with ``mfa=True`` the sign-in must have used a second factor,
        with ``max_age=N`` it must be at most N seconds old; else 401 with
        ``WWW-Authenticate: Bearer error="insufficient_user_authentication"`` (and
        ``acr_values="mfa"`` / ``max_age=N``). Checked from the session record or the
        token's ``amr`` / ``auth_time``: no I/O."""
        from authgate.web.deps import build_dependency

        return build_dependency(self, via, list(scopes), mfa=mfa, max_age=max_age)

    async def authenticate(self, request: Request, via: str = "any") -> Principal:
        """The caller of a Starlette request, or raise :class:`AuthGateError`."""
        from authgate.web.authn import authenticate

        return await authenticate(self.engine, request, via)  # type: ignore[arg-type]

    @staticmethod
    def install_error_handlers(app: Any) -> None:
        """Make the dependencies' refusals answer the contract's JSON error
        (``{"error", "detail"}``, as the ``/auth/*`` API does) instead of FastAPI's
        ``{"detail"}``: ``gate.install_error_handlers(app)`` once, after creating the app."""
        from authgate.web.deps import AuthGateHTTPException

        async def handler(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, AuthGateHTTPException)
            return exc.response  # to_response's, made (and logged) where it was raised

        app.add_exception_handler(AuthGateHTTPException, handler)

    @staticmethod
    def error_response(exc: AuthGateError) -> Response:
        """The contract's JSON error for ``exc`` (for an app's exception handler)."""
        from authgate.web.errors import to_response

        return to_response(exc)
