"""``authgate migrate``, ``keys`` and ``sessions``: the database and its keys."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from authgate.cli.base import _run, _settings, _when, config_option, fail, main
from authgate.errors import AuthGateError

T = TypeVar("T")


@main.command()
@click.option("--dry-run", is_flag=True, help="List the pending migrations; change nothing.")
@click.option("--sql", "as_sql", is_flag=True,
              help="Print the pending migrations' SQL for a DBA; change nothing.")
@config_option
def migrate(dry_run: bool, as_sql: bool, config: str | None) -> None:
    """Apply pending database migrations (or list / print them)."""
    from authgate.store.db import Database

    settings = _settings(config)
    if dry_run or as_sql:
        async def inspect() -> tuple[list[Any], Any]:
            db = Database(settings.database_url)
            try:
                return await db.pending(), db.dialect
            finally:
                await db.close()

        pending, dialect = _db_job(inspect)
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

    async def apply() -> None:  # the database only: migrating needs no Redis
        db = Database(settings.database_url)
        try:
            await db.migrate()
        finally:
            await db.close()

    _db_job(apply)
    click.echo("database is up to date")


def _db_job(job: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        return asyncio.run(job())
    except AuthGateError as exc:
        fail(exc.detail)
        raise


@main.group()
def keys() -> None:
    """Signing keys (and token-encryption keys)."""


@keys.command("list")
@config_option
def keys_list(config: str | None) -> None:
    """List signing keys (public part only)."""
    async def job(gate: Any) -> Any:
        now = gate.clock.now()
        enc = gate.keys.encryption
        encrypting = enc.encrypter(now).kid if enc.keys else None
        return (list(gate.keys.keys.values()), gate.keys.signer(now).kid, now,
                list(enc.keys.values()), encrypting)

    found, signing, now, enc_keys, encrypting = _run(config, job)
    for k in found:
        # Exactly one key signs now (the one new tokens get); the others only verify.
        state = _key_state(k.kid == signing, k.signs_from, k.retired_at, now,
                           ("signing", "verifying"))
        click.echo(f"{k.kid}\t{k.alg}\t{state}\tsigns from {_when(k.signs_from)}"
                   + (f"\tuntil {_when(k.retired_at)}" if k.retired_at else "")
                   + (f"\tleaves JWKS {_when(k.drop_after)}" if k.drop_after else ""))
    for e in enc_keys:  # never in the JWKS: only this server encrypts
        state = _key_state(e.kid == encrypting, e.encrypts_from, e.retired_at, now,
                           ("encrypting", "decrypting"))
        click.echo(f"{e.kid}\t{e.jwk.get('alg')}\t{state}\tencrypts from "
                   f"{_when(e.encrypts_from)}"
                   + (f"\tuntil {_when(e.retired_at)}" if e.retired_at else "")
                   + (f"\tdropped {_when(e.drop_after)}" if e.drop_after else ""))


def _key_state(current: bool, starts: float, retired: float | None, now: float,
               names: tuple[str, str]) -> str:
    """``names[0]`` for the key in use, ``pending`` for one that starts later (and is not
    retired before it starts), else ``names[1]`` (it only reads what it made)."""
    if current:
        return names[0]
    if starts > now and (retired is None or retired > starts):
        return "pending"
    return names[1]


@keys.command("rotate")
@click.option("--publish-ahead", default=600, show_default=True, type=click.IntRange(0),
              help="Seconds the new key is in the JWKS before it signs (at least the "
                   "30 s key reload plus the JWKS max-age of 300 s).")
@click.option("--encryption", is_flag=True,
              help="Rotate the token-encryption key instead (TOKEN_ENCRYPTION): the old one "
                   "keeps decrypting until its tokens expire. --publish-ahead is then the "
                   "time to hand the new key to resource servers that decrypt themselves.")
@config_option
def keys_rotate(publish_ahead: int, encryption: bool, config: str | None) -> None:
    """Add a new signing key; the old one keeps verifying until its tokens expire."""
    async def job(gate: Any) -> str:
        ring = gate.keys.encryption if encryption else gate.keys
        kid = str(await ring.rotate(gate.clock.now(), publish_ahead,
                                    gate.settings.access_token_ttl))
        gate.emit("key.rotated", actor="operator", kid=kid,
                           signs_in=publish_ahead, use="enc" if encryption else "sig")
        return kid

    kid = _run(config, job)
    if encryption:
        click.echo(f"new encryption key {kid} encrypts in {publish_ahead} s; running servers "
                   "load it within 30 s")
        return
    click.echo(f"new key {kid} signs in {publish_ahead} s; running servers publish it "
               "within 30 s")


@keys.command("export-decryption-key")
@click.option("--kid", default=None, help="The key to export (default: the one encrypting "
                                          "now; `keys list` shows them).")
@config_option
def keys_export_decryption_key(kid: str | None, config: str | None) -> None:
    """Print a token-encryption private key as a JWK, for a resource server that must read
    encrypted tokens itself."""
    async def job(gate: Any) -> dict[str, Any]:
        jwk = dict(gate.keys.encryption.export(kid, gate.clock.now()))
        gate.emit("key.exported", actor="operator", kid=jwk["kid"])
        return jwk

    jwk = _run(config, job)
    click.echo("authgate: warning: this is a PRIVATE key: whoever holds it reads every access "
               "token encrypted to it. Hand it only to the resource servers that must, over a "
               "secure channel; never log or commit it.", err=True)
    click.echo(json.dumps(jwk, separators=(",", ":")))


@main.group()
def sessions() -> None:
    """Sessions and refresh tokens."""


@sessions.command("purge")
@config_option
def sessions_purge(config: str | None) -> None:
    """Delete expired sessions, refresh tokens and denylist entries."""
    async def job(gate: Any) -> dict[str, int]:
        return dict(await gate.purge())

    counts = _run(config, job)
    click.echo(", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()) + " purged")
