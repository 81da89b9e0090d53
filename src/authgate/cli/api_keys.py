"""``authgate api-keys``: make, list and revoke a user's API keys (a service account's key
for CI, without first signing in as an admin). The same core service as
``POST /auth/api-keys`` and the admin API; every action is audited with the operator as
actor, and a revocation reaches the running servers through the revocation log."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from authgate.cli.base import _run, config_option, main, user_named

if TYPE_CHECKING:
    from authgate.gate import AuthGate
    from authgate.models import ApiKeyRecord


@main.group("api-keys")
def api_keys() -> None:
    """Make, list and revoke users' API keys."""


@api_keys.command("create")
@click.argument("username")
@click.option("--name", required=True, help="What the key is for (shown in lists).")
@click.option("--scope", "scopes", multiple=True,
              help="A scope (repeat for more); at most what USERNAME's roles grant. "
                   "None given: all of those.")
@click.option("--expires-in", type=int, default=None, help="Seconds until it expires.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the key included).")
@config_option
def api_keys_create(username: str, name: str, scopes: tuple[str, ...],
                    expires_in: int | None, as_json: bool, config: str | None) -> None:
    """Make an API key for USERNAME and print it: it is shown this once (only its SHA-256
    is stored)."""
    async def job(gate: AuthGate) -> tuple[str, ApiKeyRecord]:
        user = await user_named(gate, username)
        return await gate.api_keys.create(user, name, list(scopes) if scopes else None,
                                          expires_in, actor="operator")

    key, rec = _run(config, job)
    if as_json:
        from authgate.web.api_key_routes import api_key_json  # the API's own JSON

        click.echo(json.dumps({"key": key, **api_key_json(rec)}))
        return
    click.echo(key)
    click.echo(f"API key {rec.id} for {username} ({' '.join(rec.scopes) or 'no scopes'}): "
               "shown once, store it now", err=True)


@api_keys.command("list")
@click.argument("username")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@config_option
def api_keys_list(username: str, as_json: bool, config: str | None) -> None:
    """List USERNAME's live API keys (never the keys themselves)."""
    async def job(gate: Any) -> list[Any]:
        return list(await gate.api_keys.user_keys((await user_named(gate, username)).id))

    keys = _run(config, job)
    from authgate.web.api_key_routes import api_key_json  # the API's own JSON

    if as_json:
        click.echo(json.dumps([api_key_json(k) for k in keys]))
        return
    for k in keys:
        row = api_key_json(k)
        click.echo("\t".join([k.id, k.name, " ".join(k.scopes) or "-", row["created_at"],
                              row["last_used_at"] or "never used",
                              row["expires_at"] or "no expiry"]))


@api_keys.command("revoke")
@click.argument("username")
@click.argument("key_id", required=False)
@click.option("--all", "every", is_flag=True, help="Revoke every key of USERNAME.")
@config_option
def api_keys_revoke(username: str, key_id: str | None, every: bool,
                    config: str | None) -> None:
    """Revoke USERNAME's key KEY_ID (or --all of them); running servers refuse it within a
    second."""
    if every == (key_id is not None):
        raise click.UsageError("give a KEY_ID or --all")

    async def job(gate: Any) -> int:
        user = await user_named(gate, username)
        if key_id is None:
            return int(await gate.api_keys.revoke_all(user.id, actor="operator"))
        await gate.api_keys.revoke(user.id, key_id, actor="operator")
        return 1

    count = _run(config, job)
    click.echo(f"revoked {count} API key{'s' if count != 1 else ''} of {username}")
