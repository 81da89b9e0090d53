"""The mail outbox's background sender: renders each due mail (the token it carries is
unsealed only now), hands it to the transport, and erases the sealed token once the mail
is accepted. An SMTP outage delays mail (backoff), never loses it; with several instances
each mail is claimed, and so sent, by one of them."""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy.engine import RowMapping

from authgate.clock import Clock
from authgate.core.credentials import Sealer
from authgate.mail.render import Renderer
from authgate.mail.transport import Transport
from authgate.outbox_sender import OutboxSender, backoff
from authgate.store import schema as t
from authgate.store.db import Database
from authgate.store.outbox import Outbox

log = logging.getLogger("authgate.mail")


class MailSender(OutboxSender[RowMapping]):
    name = "mail"
    # One mail per claim (an SMTP exchange may take up to its 15 s timeout, the lease is
    # 30 s), up to 200 per round.
    batch = 1
    claims_per_round = 200

    def __init__(self, db: Database, transport: Transport, renderer: Renderer, sealer: Sealer,
                 clock: Clock, sender: str, interval: float = 1.0) -> None:
        super().__init__(clock, interval)
        self.outbox = Outbox(db, t.mail_outbox)
        self.transport = transport
        self.renderer = renderer
        self.sealer = sealer
        self.sender = sender

    async def claim(self, now: float, lease: float, limit: int) -> list[RowMapping]:
        return await self.outbox.claim(now, lease, limit)

    async def deliver(self, row: RowMapping) -> int:
        context: dict[str, Any] = json.loads(row["context"])
        if context.get("expires_at", float("inf")) <= self.clock.now():
            # The link in it no longer works: sending it now would only confuse.
            await self.outbox.delivered(row["id"], self.clock.now(), secret=None,
                                        last_error="abandoned: its link expired unsent")
            log.warning("mail %s to %s abandoned: its link expired before it could be sent",
                        row["id"], row["to_addr"], extra={"mail": row["id"]})
            return 0
        try:
            if row["secret"]:
                token = self.sealer.open("mail", row["secret"])
                context["link"] = f"{context['link']}?token={token}"
            message = self.renderer.message(row["template"], context, to=row["to_addr"],
                                            sender=self.sender)
            await self.transport.send(message)
        except Exception as exc:  # SMTP down, refused, a template an operator broke ...
            error = f"{type(exc).__name__}: {exc}"[:200]
            await self.outbox.failed(row["id"], self.clock.now() + backoff(row["attempts"]),
                                     error)
            log.warning("mail %s to %s not sent (%s); retrying later", row["id"],
                        row["to_addr"], error,
                        extra={"mail": row["id"], "attempts": row["attempts"] + 1})
            return 0
        await self.outbox.delivered(row["id"], self.clock.now(), secret=None)
        log.info("mail %s (%s) sent to %s", row["id"], row["template"], row["to_addr"],
                 extra={"mail": row["id"]})
        return 1
