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

    settings = _settings(config)
    _run(config, lambda engine: asyncio.sleep(0))  # preflight: database reachable, migrated
    sock = _bind(host, port)
    if config:
        os.environ["AUTHGATE_CONFIG"] = os.path.abspath(config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s "
                        "%(message)s", stream=sys.stderr)
    click.echo(f"authgate serving on http://{host}:{sock.getsockname()[1]} "
               f"(database {_redact(settings.database_url)}, {workers} worker(s))", err=True)
    server_config = uvicorn.Config("authgate.web.app:app_factory", factory=True,
                                   workers=workers, access_log=False, log_level="warning",
                                   proxy_headers=False, server_header=False,
                                   timeout_graceful_shutdown=5)
    server = uvicorn.Server(server_config)
    if workers > 1:
        from uvicorn.supervisors import Multiprocess

        Multiprocess(server_config, sockets=[sock]).run()
    else:
        server.run(sockets=[sock])


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


def _redact(url: str) -> str:
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


@main.command()
@config_option
def migrate(config: str | None) -> None:
    """Apply pending database migrations."""
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
        return list(engine.keys.keys.values()), engine.clock.now()

    found, now = _run(config, job)
    for k in found:
        state = ("retired" if k.retired_at is not None and k.retired_at <= now else
                 "pending" if k.signs_from > now else "signing")
        click.echo(f"{k.kid}\t{k.alg}\t{state}\tfrom {_when(k.signs_from)}"
                   + (f"\tleaves JWKS {_when(k.drop_after)}" if k.drop_after else ""))


@keys.command("rotate")
@click.option("--publish-ahead", default=600, show_default=True, type=click.IntRange(0),
              help="Seconds the new key is in the JWKS before it signs (at least the "
                   "30 s key reload plus the JWKS max-age of 300 s).")
@config_option
def keys_rotate(publish_ahead: int, config: str | None) -> None:
    """Add a new signing key; the old one keeps verifying until its tokens expire."""
    async def job(engine: Any) -> str:
        return str(await engine.keys.rotate(engine.clock.now(), publish_ahead,
                                            engine.settings.access_token_ttl))

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

