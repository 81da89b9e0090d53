"""``authgate mail``: the outbox (pending) and a test mail."""

from __future__ import annotations

from typing import Any

import click

from authgate.cli.base import _run, _when, config_option, fail, main


@main.group()
def mail() -> None:
    """Mail delivery."""


@mail.command("pending")
@config_option
def mail_pending(config: str | None) -> None:
    """Mails not yet accepted by the SMTP server (never their tokens)."""
    async def job(gate: Any) -> Any:
        return await gate.mail.outbox.pending("to_addr", "template")

    rows = _run(config, job)
    for row in rows:
        click.echo(f"{row['id']}\t{row['template']}\t{row['to_addr']}\t"
                   f"created {_when(row['created_at'])}\tattempts {row['attempts']}\t"
                   f"next {_when(row['next_attempt_at'])}\t{row['last_error'] or '-'}")
    click.echo(f"{len(rows)} pending", err=True)


@mail.command("test")
@click.argument("address")
@config_option
def mail_test(address: str, config: str | None) -> None:
    """Send a test mail to ADDRESS now, through SMTP_URL (or the log), and say how it went."""
    from authgate.core.account import clean_email

    async def job(gate: Any) -> str:
        to = clean_email(address)
        context = {"site": gate.settings.public_url.split("://", 1)[1],
                   "site_url": gate.settings.public_url}
        message = gate.mail.renderer.message("test", context, to=to,
                                                 sender=gate.settings.mail_from)
        try:
            await gate.mail.transport.send(message)
        except Exception as exc:  # the SMTP server's refusal, a TLS failure, ...
            return f"{type(exc).__name__}: {exc}".splitlines()[0]
        return ""

    error = _run(config, job)
    if error:
        fail(f"the test mail was not sent: {error}")
    where = "the log (no SMTP_URL)" if not _smtp(config) else "the SMTP server"
    click.echo(f"test mail to {address} handed to {where}")


def _smtp(config: str | None) -> bool:
    from authgate.cli.base import _settings

    return _settings(config).smtp_url is not None
