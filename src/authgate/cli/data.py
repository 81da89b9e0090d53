"""``authgate migrate``, ``keys`` and ``sessions``: the database and its keys."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from authgate.cli.base import _run, _settings, _when, config_option, fail, main
from authgate.errors import AuthGateError


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
