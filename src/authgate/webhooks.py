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

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time

import httpx

from authgate.clock import Clock
from authgate.errors import AuthGateError
from authgate.store.audit import AuditRecords, Delivery
from authgate.tasks import cancel

log = logging.getLogger("authgate")
LEASE = 30.0
TIMEOUT = 10.0


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


def backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones (with a little jitter)."""
    return float(min(3600.0, 5.0 * 2 ** min(attempts, 12)) * (1 + secrets.randbelow(100) / 1000))


class WebhookSender:
    """The background sender: claims due deliveries, posts them, records the outcome."""

    def __init__(self, records: AuditRecords, url: str, secret: str, clock: Clock,
                 interval: float = 1.0) -> None:
        self.records = records
        self.url = url
        self.key = secret_key(secret)
        self.clock = clock
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)
        self._task = asyncio.create_task(self._run(), name="authgate-webhooks")

    async def stop(self) -> None:
        await cancel(self._task)
        if self._client is not None:
            await self._client.aclose()

    async def _run(self) -> None:
        while True:
            try:
                await self.send_due()
            except AuthGateError:
                pass  # the database is away: try again next round
            except Exception:
                log.exception("webhook round failed")
            await asyncio.sleep(self.interval)

    async def send_due(self) -> int:
        """Send every due delivery once; returns how many were delivered."""
        claimed = await self.records.claim(self.clock.now(), LEASE)
        sent = 0
        for delivery in claimed:
            sent += await self._send(delivery)
        return sent

    async def _send(self, delivery: Delivery) -> int:
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
