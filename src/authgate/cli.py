"""``authgate``: serve, manage users, keys and sessions. Every failure is one clear line on
stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from authgate.errors import AuthGateError, ConfigError
from authgate.settings import Settings, load_settings

T = TypeVar("T")


def fail(message: str, code: int = 1) -> None:
    click.echo(f"authgate: error: {message}", err=True)
    sys.exit(code)


def _settings(config: str | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        fail(exc.detail, 2)
        raise


def _run(config: str | None, job: Callable[[Any], Awaitable[T]]) -> T:
    """Open the engine (migrating the database), run ``job(engine)``, close it."""
    from authgate.engine import Engine

    settings = _settings(config)

    async def main() -> T:
        engine = Engine(settings)
        try:
            await engine.db.migrate()
            await engine.keys.load(engine.clock.now())
            return await job(engine)
        finally:
            await engine.events.flush()  # what the command did goes into the audit trail
            await engine.db.close()

    try:
        return asyncio.run(main())
    except AuthGateError as exc:
        fail(exc.detail)
    except (OSError, ImportError) as exc:
        fail(f"cannot reach the database: {exc}")
    except Exception as exc:  # a driver error we did not foresee: still one line
        fail(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    raise AssertionError("unreachable")


config_option = click.option("--config", "config", type=click.Path(dir_okay=False),
                             default=None, envvar="AUTHGATE_CONFIG",
                             help="TOML file of settings (keys as the AUTHGATE_ variables).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """authgate: hybrid session + token authentication."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@config_option
def serve(host: str, port: int, workers: int, config: str | None) -> None:
    """Run the auth server (API, login page, JWKS, forward-auth)."""
    import logging

    import uvicorn

    from authgate.logs import configure as configure_logging
    from authgate.settings import unknown_environment

    settings = _settings(config)
    configure_logging(settings.log_format)
    log = logging.getLogger("authgate")
    for warning in unknown_environment():
        log.warning(warning)
    sock = _bind(host, port)
    listening = f"http://{_url_host(host)}:{sock.getsockname()[1]}"
    if "public_url" not in settings.model_fields_set:
        # Where the server listens is where browsers go, unless told otherwise: the Origin
        # check, the login form and the issuer all follow PUBLIC_URL.
        os.environ["AUTHGATE_PUBLIC_URL"] = listening
        settings = _settings(config)
        if host in ("0.0.0.0", "::"):  # noqa: S104 - naming the wildcard, not binding it
            log.warning("PUBLIC_URL is not set; using %s. Set AUTHGATE_PUBLIC_URL to the "
                        "address browsers use.", listening)
    elif _plain_http_problem(settings):
        sock.close()
        fail(str(_plain_http_problem(settings)), 2)
    elif not settings.trusted_proxies and not _same_place(settings.public_origin, listening):
        log.warning("PUBLIC_URL is %s but the server listens on %s and TRUSTED_PROXIES is "
                    "empty: browsers that open %s will fail the Origin check and the login "
                    "form.", settings.public_origin, listening, listening)
    _run(config, _preflight)  # database reachable and migrated, Redis reachable
    if config:
        os.environ["AUTHGATE_CONFIG"] = os.path.abspath(config)
    log.info("authgate serving on %s (database %s, %d worker(s))", listening,
             _redact(settings.database_url), workers)
    server_config = uvicorn.Config("authgate.web.app:app_factory", factory=True,
                                   workers=workers, access_log=False, log_level="warning",
                                   log_config=None,  # authgate.logs formats every line
                                   proxy_headers=False, server_header=False,
                                   timeout_graceful_shutdown=5,
                                   # A worker busy starting up on a loaded machine is not
                                   # dead: uvicorn's 5 s default replaced them in a loop.
                                   timeout_worker_healthcheck=30)
    server = uvicorn.Server(server_config)
    if workers > 1:
        from uvicorn.supervisors import Multiprocess

        Multiprocess(server_config, sockets=[sock]).run()
    else:
        server.run(sockets=[sock])


async def _preflight(engine: Any) -> None:
    """What the server's start-up needs, checked here so that a failure is one line on
    stderr (inside uvicorn it would be a traceback): the database (opened by ``_run``) and,
    when configured, Redis."""
    if engine.redis is None:
        return
    from redis.exceptions import RedisError

    from authgate.errors import BackendUnavailable

    try:
        await engine.redis.client.ping()
    except (RedisError, OSError) as exc:
        raise BackendUnavailable(f"cannot reach Redis: {exc}") from None
    finally:
        await engine.redis.stop()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "port in use" if exc.errno == 98 else (exc.strerror or str(exc))
        fail(f"cannot listen on {host}:{port}: {reason}")
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):  # noqa: S104 - naming the wildcard, not binding it
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _same_place(origin: str, listening: str) -> bool:
    """Whether a browser at ``origin`` reaches the server listening at ``listening``: the
    same port, and the same host (every loopback spelling counts as one)."""
    from urllib.parse import urlsplit

    a, b = urlsplit(origin), urlsplit(listening)
    if a.scheme != "http" or a.port != b.port:
        return False
    return a.hostname == b.hostname or (a.hostname in LOOPBACK and b.hostname in LOOPBACK)


def _plain_http_problem(settings: Settings) -> str | None:
    """Secure cookies over plain HTTP on a real network: the browser drops every cookie and
    the user sees "form expired". Loopback is a secure context, so it is fine there."""
    from urllib.parse import urlsplit

    parts = urlsplit(settings.public_url)
    if settings.cookie_secure and parts.scheme == "http" and parts.hostname not in LOOPBACK:
        return (f"PUBLIC_URL {settings.public_origin} is plain HTTP on a non-loopback host, "
                "where browsers drop the Secure session cookie: put HTTPS in front (and set "
                "AUTHGATE_PUBLIC_URL=https://...) or, for development only, set "
                "AUTHGATE_COOKIE_SECURE=false")
    return None


def _redact(url: str) -> str:
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


@main.command()
@click.option("--dry-run", is_flag=True, help="List the pending migrations; change nothing.")
@click.option("--sql", "as_sql", is_flag=True,
              help="Print the pending migrations' SQL for a DBA; change nothing.")
@config_option
def migrate(dry_run: bool, as_sql: bool, config: str | None) -> None:
    """Apply pending database migrations (or list / print them)."""
    from authgate.store.db import Database

    if dry_run or as_sql:
        settings = _settings(config)

        async def inspect() -> tuple[list[Any], Any]:
            db = Database(settings.database_url)
            try:
                return await db.pending(), db.dialect
            finally:
                await db.close()

        try:
            pending, dialect = asyncio.run(inspect())
        except AuthGateError as exc:
            fail(exc.detail)
            return
        for step in pending:
            if as_sql:
                click.echo(f"-- migration {step.version}: {step.summary}")
                for statement in step.sql(dialect):
                    click.echo(statement)
                click.echo("INSERT INTO schema_migrations (version, applied_at) "  # noqa: S608
                           f"VALUES ({int(step.version)}, 0);")
            else:
                click.echo(f"{step.version}\t{step.summary}")
        click.echo(f"{len(pending)} pending migration(s)", err=True)
        return

    async def job(engine: Any) -> int:
        return int(await engine.db.migrate())

    _run(config, job)
    click.echo("database is up to date")


@main.group()
def users() -> None:
    """Create and manage users."""


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return str(password)


@users.command("create")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.option("--role", "roles", multiple=True, help="A role (repeat for more).")
@config_option
def users_create(username: str, password_stdin: bool, roles: tuple[str, ...],
                 config: str | None) -> None:
    """Create USERNAME."""
    password = _read_password(password_stdin)

    async def job(engine: Any) -> Any:
        return await engine.create_user(username, password, list(roles))

    user = _run(config, job)
    click.echo(f"created user {user.username} ({user.id})")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@config_option
def users_list(as_json: bool, config: str | None) -> None:
    """List users."""
    async def job(engine: Any) -> Any:
        return await engine.records.list_users()

    found = _run(config, job)
    if as_json:
        click.echo(json.dumps([{"id": u.id, "username": u.username, "roles": list(u.roles),
                                "disabled": u.disabled} for u in found]))
        return
    for u in found:
        state = "disabled" if u.disabled else "active"
        click.echo(f"{u.username}\t{u.id}\t{state}\t{','.join(u.roles)}")


def _with_user(config: str | None, username: str,
               action: Callable[[Any, Any], Awaitable[None]]) -> None:
    async def job(engine: Any) -> None:
        user = await engine.user_by_name(username)
        if user is None:
            raise AuthGateError(f"no user named {username!r}")
        await action(engine, user)

    _run(config, job)


@users.command("disable")
@click.argument("username")
@config_option
def users_disable(username: str, config: str | None) -> None:
    """Disable USERNAME and end every session and token of theirs."""
    _with_user(config, username, lambda e, u: e.set_disabled(u, True))
    click.echo(f"disabled {username}")


@users.command("enable")
@click.argument("username")
@config_option
def users_enable(username: str, config: str | None) -> None:
    """Enable USERNAME again."""
    _with_user(config, username, lambda e, u: e.set_disabled(u, False))
    click.echo(f"enabled {username}")


@users.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@config_option
def users_set_password(username: str, password_stdin: bool, config: str | None) -> None:
    """Set USERNAME's password; their sessions and token families end."""
    password = _read_password(password_stdin)
    _with_user(config, username, lambda e, u: e.set_password(u, password))
    click.echo(f"password set for {username}")


@users.command("roles")
@click.argument("username")
@click.option("--role", "roles", multiple=True,
              help="A role (repeat for more). None given: the user has no roles.")
@config_option
def users_roles(username: str, roles: tuple[str, ...], config: str | None) -> None:
    """Set USERNAME's roles to exactly these; their access tokens issued before end."""
    _with_user(config, username, lambda e, u: e.set_roles(u, list(roles)))
    click.echo(f"roles of {username}: {', '.join(dict.fromkeys(roles)) or '(none)'}")


@main.group()
def keys() -> None:
    """Signing keys."""


@keys.command("list")
@config_option
def keys_list(config: str | None) -> None:
    """List signing keys (public part only)."""
    async def job(engine: Any) -> Any:
        now = engine.clock.now()
        return list(engine.keys.keys.values()), engine.keys.signer(now).kid, now

    found, signing, now = _run(config, job)
    for k in found:
        # Exactly one key signs now (the one new tokens get); the others only verify.
        if k.kid == signing:
            state = "signing"
        elif k.signs_from > now and (k.retired_at is None or k.retired_at > k.signs_from):
            state = "pending"
        else:
            state = "verifying"
        click.echo(f"{k.kid}\t{k.alg}\t{state}\tsigns from {_when(k.signs_from)}"
                   + (f"\tuntil {_when(k.retired_at)}" if k.retired_at else "")
                   + (f"\tleaves JWKS {_when(k.drop_after)}" if k.drop_after else ""))


@keys.command("rotate")
@click.option("--publish-ahead", default=600, show_default=True, type=click.IntRange(0),
              help="Seconds the new key is in the JWKS before it signs (at least the "
                   "30 s key reload plus the JWKS max-age of 300 s).")
@config_option
def keys_rotate(publish_ahead: int, config: str | None) -> None:
    """Add a new signing key; the old one keeps verifying until its tokens expire."""
    async def job(engine: Any) -> str:
        kid = str(await engine.keys.rotate(engine.clock.now(), publish_ahead,
                                           engine.settings.access_token_ttl))
        engine.events.emit("key.rotated", actor="operator", kid=kid,
                           signs_in=publish_ahead)
        return kid

    kid = _run(config, job)
    click.echo(f"new key {kid} signs in {publish_ahead} s; running servers publish it "
               "within 30 s")


@main.group()
def sessions() -> None:
    """Sessions and refresh tokens."""


@sessions.command("purge")
@config_option
def sessions_purge(config: str | None) -> None:
    """Delete expired sessions, refresh tokens and denylist entries."""
    async def job(engine: Any) -> dict[str, int]:
        return dict(await engine.purge())

    counts = _run(config, job)
    click.echo(", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()) + " purged")


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")



@main.group()
def config() -> None:
    """Check and show the effective configuration."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@config_option
def config_show(as_json: bool, config: str | None) -> None:
    """Every setting's effective value (secrets redacted) and where it came from."""
    from pydantic import SecretStr

    from authgate.settings import source_of

    settings = _settings(config)
    rows = []
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            shown: Any = "********" if value.get_secret_value() else ""
        elif isinstance(value, str) and "://" in value:
            shown = _redact(value)
        elif isinstance(value, Path):
            shown = str(value)
        else:
            shown = value
        rows.append({"name": f"AUTHGATE_{name.upper()}", "value": shown,
                     "source": source_of(name, config)})
    if as_json:
        click.echo(json.dumps(rows, default=str))
        return
    for row in rows:
        click.echo(f"{row['name']}\t{row['value']}\t{row['source']}")


@config.command("check")
@config_option
def config_check(config: str | None) -> None:
    """Validate the settings and reach every backend they name; one line per problem."""
    from authgate.settings import unknown_environment

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        fail(exc.detail, 2)
        return
    for warning in unknown_environment():
        click.echo(f"authgate: warning: {warning}", err=True)
    problems = asyncio.run(_reach_backends(settings))
    plain_http = _plain_http_problem(settings)
    if plain_http:
        problems.append(plain_http)
    for problem in problems:
        click.echo(f"authgate: error: {problem}", err=True)
    if problems:
        sys.exit(1)
    click.echo("configuration ok: " + ", ".join(
        ["database"] + (["redis"] if settings.redis_url else [])) + " reachable")


async def _reach_backends(settings: Settings) -> list[str]:
    """What cannot be reached, one sentence each (nothing is created or migrated)."""
    import sqlalchemy as sa

    from authgate.store.db import Database

    problems: list[str] = []
    try:
        db = Database(settings.database_url)
        try:
            async with db.read() as conn:
                await conn.execute(sa.text("SELECT 1"))
        finally:
            await db.close()
    except Exception as exc:  # any driver error: report it, in one line
        problems.append(f"database {_redact(settings.database_url)}: {_first_line(exc)}")
    if settings.redis_url:
        import redis.asyncio as aioredis

        client = aioredis.from_url(settings.redis_url, socket_connect_timeout=2,
                                   socket_timeout=2)
        try:
            await client.ping()
        except Exception as exc:  # connection refused, auth, DNS: one line
            problems.append(f"redis {_redact(settings.redis_url)}: {_first_line(exc)}")
        finally:
            await client.aclose()
    return problems


def _first_line(exc: BaseException) -> str:
    text = str(exc.__cause__ or exc) or type(exc).__name__
    return text.splitlines()[0][:200]


@main.group()
def audit() -> None:
    """The audit trail: security events."""


@audit.command("list")
@click.option("--user", "username", default=None, help="Only this user's events.")
@click.option("--since", default=None,
              help="Only events since this time (ISO 8601, e.g. 2026-12-01T00:00:00Z).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@config_option
def audit_list(username: str | None, since: str | None, limit: int, as_json: bool,
               config: str | None) -> None:
    """Security events, oldest first."""
    since_ts = _parse_time(since) if since else None

    async def job(engine: Any) -> Any:
        user_id = None
        if username is not None:
            user = await engine.user_by_name(username)
            if user is None:
                raise AuthGateError(f"no user named {username!r}")
            user_id = user.id
        return await engine.audit.list_events(user_id=user_id, since=since_ts, limit=limit)

    for event in _run(config, job):
        if as_json:
            click.echo(json.dumps(event.to_json(), default=str))
        else:
            ids = " ".join(f"{k}={v}" for k, v in event.data.items())
            click.echo(f"{_when(event.at)}\t{event.type}\t{event.user_id or '-'}\t"
                       f"{event.actor}\t{event.ip or '-'}\t{ids}".rstrip())


def _parse_time(value: str) -> float:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        fail(f"--since {value!r} is not an ISO 8601 time such as 2026-12-01T00:00:00Z", 2)
        raise


@main.group()
def webhooks() -> None:
    """Webhook deliveries."""


@webhooks.command("pending")
@config_option
def webhooks_pending(config: str | None) -> None:
    """Deliveries not yet accepted by the receiver."""
    async def job(engine: Any) -> Any:
        return await engine.audit.pending()

    rows = _run(config, job)
    for row in rows:
        click.echo(f"{row['id']}\t{row['type']}\tcreated {_when(row['created_at'])}\t"
                   f"attempts {row['attempts']}\tnext {_when(row['next_attempt_at'])}\t"
                   f"{row['last_error'] or '-'}")
    click.echo(f"{len(rows)} pending", err=True)
