"""``authgate users``: create, list, disable, enable, set-password, roles."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import click

from authgate.cli.base import _run, config_option, fail, main, user_named


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
@click.option("--email", default=None, help="The user's email address (unverified).")
@click.option("--email-verified", is_flag=True,
              help="The operator vouches for --email: it counts as verified.")
@config_option
def users_create(username: str, password_stdin: bool, roles: tuple[str, ...],
                 email: str | None, email_verified: bool, config: str | None) -> None:
    """Create USERNAME."""
    from authgate.core.account import clean_email

    if email_verified and email is None:
        fail("--email-verified needs --email", 2)
    password = _read_password(password_stdin)

    async def job(gate: Any) -> Any:
        address = clean_email(email) if email is not None else None
        user = await gate.users.create_user(username, password, list(roles), email=address)
        if email_verified:
            await gate.account.mark_verified(user)
        return user

    user = _run(config, job)
    click.echo(f"created user {user.username} ({user.id})")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@config_option
def users_list(as_json: bool, config: str | None) -> None:
    """List users."""
    async def job(gate: Any) -> Any:
        return await gate.users.list_users()

    found = _run(config, job)
    if as_json:
        click.echo(json.dumps([{"id": u.id, "username": u.username, "roles": list(u.roles),
                                "disabled": u.disabled, "email": u.email,
                                "email_verified": u.email_verified} for u in found]))
        return
    for u in found:
        state = "disabled" if u.disabled else "active"
        email = f"{u.email} ({'verified' if u.email_verified else 'unverified'})" \
            if u.email else "-"
        click.echo(f"{u.username}\t{u.id}\t{state}\t{','.join(u.roles)}\t{email}")


def _with_user(config: str | None, username: str,
               action: Callable[[Any, Any], Awaitable[None]]) -> None:
    async def job(gate: Any) -> None:
        await action(gate, await user_named(gate, username))

    _run(config, job)


@users.command("disable")
@click.argument("username")
@config_option
def users_disable(username: str, config: str | None) -> None:
    """Disable USERNAME and end every session and token of theirs."""
    _with_user(config, username, lambda g, u: g.users.set_disabled(u, True))
    click.echo(f"disabled {username}")


@users.command("enable")
@click.argument("username")
@config_option
def users_enable(username: str, config: str | None) -> None:
    """Enable USERNAME again."""
    _with_user(config, username, lambda g, u: g.users.set_disabled(u, False))
    click.echo(f"enabled {username}")


@users.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@config_option
def users_set_password(username: str, password_stdin: bool, config: str | None) -> None:
    """Set USERNAME's password; their sessions and token families end."""
    password = _read_password(password_stdin)
    _with_user(config, username, lambda g, u: g.users.set_password(u, password))
    click.echo(f"password set for {username}")


@users.command("roles")
@click.argument("username")
@click.option("--role", "roles", multiple=True,
              help="A role (repeat for more). None given: the user has no roles.")
@config_option
def users_roles(username: str, roles: tuple[str, ...], config: str | None) -> None:
    """Set USERNAME's roles to exactly these; their access tokens issued before end."""
    _with_user(config, username, lambda g, u: g.users.set_roles(u, list(roles)))
    click.echo(f"roles of {username}: {', '.join(dict.fromkeys(roles)) or '(none)'}")


@users.command("mfa-reset")
@click.argument("username")
@config_option
def users_mfa_reset(username: str, config: str | None) -> None:
    """Remove USERNAME's second factors (a lost authenticator app and recovery codes); every
    session and token of theirs ends."""
    _with_user(config, username, lambda g, u: g.factors.reset(u))
    click.echo(f"second factors removed for {username}; their sessions and tokens ended")


@users.command("delete")
@click.argument("username")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@config_option
def users_delete(username: str, yes: bool, config: str | None) -> None:
    """Delete USERNAME and everything they hold; every session and token of theirs ends."""
    if not yes:
        click.confirm(f"delete {username} and everything they hold?", abort=True)
    _with_user(config, username, lambda g, u: g.users.delete_user(u))
    click.echo(f"deleted {username}")
