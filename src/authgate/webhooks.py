"""Webhooks: every security event POSTed to ``WEBHOOK_URL``, signed as the Standard
Webhooks spec says, from the database outbox, at least once.

Headers ``webhook-id`` (the delivery id: the same on every retry, so a receiver can
de-duplicate), ``webhook-timestamp`` (seconds) and ``webhook-signature``
(``v1,<base64 HMAC-SHA256 of "id.timestamp.body" under the secret>``; ``WEBHOOK_SECRET`` is
``whsec_<base64>``). A delivery is retried with exponential backoff (5 s doubling, at most
an hour) until a 2xx; several instances never send the same delivery at once (each claims
it for a lease first).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from typing import TYPE_CHECKING

from authgate.clock import Clock
from authgate.outbox_sender import OutboxSender, backoff
from authgate.store.audit import AuditRecords, Delivery

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("authgate")
TIMEOUT = 10.0
__all__ = ["WebhookSender", "backoff", "secret_key", "sign"]


def secret_key(secret: str) -> bytes:
    """The key bytes of a ``whsec_<base64>`` secret; ValueError when it is not one."""
    if not secret.startswith("whsec_"):
        raise ValueError("must look like whsec_<base64>")
    key = base64.b64decode(secret[len("whsec_"):], validate=True)
    if len(key) < 24:
        raise ValueError("must hold at least 24 random bytes")
    return key


def sign(key: bytes, delivery_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value (Standard Webhooks, v1)."""
    message = f"{delivery_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


class WebhookSender(OutboxSender[Delivery]):
    """The background sender: claims due deliveries, posts them, records the outcome."""

    name = "webhooks"

    def __init__(self, records: AuditRecords, url: str, secret: str, clock: Clock,
                 interval: float = 1.0) -> None:
        super().__init__(clock, interval)
        self.records = records
        self.url = url
        self.key = secret_key(secret)
        self._client: httpx.AsyncClient | None = None

    def start(self) -> None:
        import httpx  # here: ~0.1 s of imports (rich, when installed) every CLI command spared

        self._client = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)
        super().start()

    async def stop(self) -> None:
        await super().stop()
        if self._client is not None:
            await self._client.aclose()

    async def claim(self, now: float, lease: float, limit: int) -> list[Delivery]:
        return await self.records.claim(now, lease, limit)

    async def deliver(self, delivery: Delivery) -> int:
        import httpx

        assert self._client is not None
        # Wall time, not the injected clock: receivers refuse signatures off by minutes.
        timestamp = int(time.time())
        body = delivery.payload.encode()
        headers = {"content-type": "application/json", "webhook-id": delivery.id,
                   "webhook-timestamp": str(timestamp),
                   "webhook-signature": sign(self.key, delivery.id, timestamp, body)}
        try:
            response = await self._client.post(self.url, content=body, headers=headers)
            ok, error = 200 <= response.status_code < 300, f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            ok, error = False, type(exc).__name__
        if ok:
            await self.records.delivered(delivery.id, self.clock.now())
            return 1
        await self.records.failed(delivery.id, self.clock.now() + backoff(delivery.attempts),
                                  error)
        log.warning("webhook delivery %s failed (%s); retrying later", delivery.id, error,
                    extra={"delivery": delivery.id, "attempts": delivery.attempts + 1})
        return 0
