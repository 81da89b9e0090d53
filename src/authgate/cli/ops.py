"""``authgate config``, ``audit`` and ``webhooks``: for operators."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from authgate.cli.base import _redact, _run, _settings, _when, config_option, fail, main
from authgate.cli.serve import _plain_http_problem
from authgate.errors import AuthGateError, ConfigError
from authgate.settings import Settings, load_settings


@main.group()
def config() -> None:
    """Check and show the effective configuration."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@config_option
def config_show(as_json: bool, config: str | None) -> None:
    """Every setting's effective value (secrets redacted) and where it came from."""
    from pydantic import SecretStr

    from authgate.setting_webauthn import WebauthnFields
    from authgate.settings import source_of

    settings = _settings(config)
    rows = []
    # pydantic lists a mixin's fields before Settings' own: the WebAuthn ones, listed last
    # before they moved into their mixin, stay last (the listing keeps its order).
    last = list(WebauthnFields.model_fields)
    for name in [n for n in Settings.model_fields if n not in last] + last:
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

    async def job(gate: Any) -> Any:
        user_id = None
        if username is not None:
            user = await gate.users.user_by_name(username)
            if user is None:
                raise AuthGateError(f"no user named {username!r}")
            user_id = user.id
        return await gate.audit.list_events(user_id=user_id, since=since_ts, limit=limit)

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
    async def job(gate: Any) -> Any:
        return await gate.audit.pending()

    rows = _run(config, job)
    for row in rows:
        click.echo(f"{row['id']}\t{row['type']}\tcreated {_when(row['created_at'])}\t"
                   f"attempts {row['attempts']}\tnext {_when(row['next_attempt_at'])}\t"
                   f"{row['last_error'] or '-'}")
    click.echo(f"{len(rows)} pending", err=True)
