"""Where a mail goes: an SMTP server through ``aiosmtplib`` (``SMTP_URL``), or the server's
log when no SMTP server is configured (development)."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger("authgate.mail")
TIMEOUT = 15.0


class Transport(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Deliver ``message`` or raise (then the outbox retries it later)."""
        ...


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    implicit_tls: bool = False  # smtps://
    starttls: bool = False  # smtp://...?starttls=true


def parse_smtp_url(url: str) -> SmtpConfig:
    """``smtp://[user:pass@]host:port[?starttls=true]`` or ``smtps://...`` (implicit TLS);
    ValueError with a readable reason otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError("must look like smtp://[user:pass@]host:port or smtps://…")
    if not parts.hostname:
        raise ValueError("has no host")
    try:
        port = parts.port or (465 if parts.scheme == "smtps" else 25)
    except ValueError:
        raise ValueError("has a bad port") from None
    query = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"starttls"}
    if unknown:
        raise ValueError(f"has unknown parameter(s): {', '.join(sorted(unknown))}")
    starttls = query.get("starttls", "false")
    if starttls not in ("true", "false", "1", "0"):
        raise ValueError("starttls must be true or false")
    if parts.scheme == "smtps" and starttls in ("true", "1"):
        raise ValueError("smtps:// is TLS already; starttls is for smtp://")
    return SmtpConfig(
        host=parts.hostname, port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        implicit_tls=parts.scheme == "smtps", starttls=starttls in ("true", "1"))


class SmtpTransport:
    """One connection per round of the sender (opened, used, closed)."""

    def __init__(self, config: SmtpConfig, tls_context: ssl.SSLContext | None = None) -> None:
        self.config = config
        self.tls_context = tls_context or ssl.create_default_context()

    async def send(self, message: EmailMessage) -> None:
        import aiosmtplib

        c = self.config
        await aiosmtplib.send(
            message, hostname=c.host, port=c.port, username=c.username, password=c.password,
            use_tls=c.implicit_tls, start_tls=c.starttls,
            tls_context=self.tls_context if (c.implicit_tls or c.starttls) else None,
            timeout=TIMEOUT)


class LogTransport:
    """No SMTP server: each mail is written to the server's log (development only)."""

    async def send(self, message: EmailMessage) -> None:
        body = message.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        log.warning("mail (no SMTP_URL set; logged instead of sent) to %s: %s\n%s",
                    message["To"], message["Subject"], text,
                    extra={"mail_to": str(message["To"])})
