"""What the outbox senders (webhooks, mail) share: a background loop that claims the due
rows for a lease, hands each to ``deliver``, and retries failures with exponential backoff
(5 s doubling, at most an hour). The database going away only delays a round."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from abc import ABC, abstractmethod
from typing import Generic, TypeVar

from authgate.clock import Clock
from authgate.errors import AuthGateError
from authgate.tasks import cancel

log = logging.getLogger("authgate")
LEASE = 30.0
Row = TypeVar("Row")


def backoff(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones (with a little jitter)."""
    return float(min(3600.0, 5.0 * 2 ** min(attempts, 12)) * (1 + secrets.randbelow(100) / 1000))


class OutboxSender(ABC, Generic[Row]):
    """Claims due rows, delivers them, records the outcome; one task per process."""

    name = "outbox"
    #: Rows claimed at a time, and claims per round: a claim's rows must all be sent within
    #: the lease, or another instance may claim (and send) them again.
    batch = 20
    claims_per_round = 1

    def __init__(self, clock: Clock, interval: float = 1.0) -> None:
        self.clock = clock
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"authgate-{self.name}")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    def wake(self) -> None:
        """Something was queued: send it now rather than at the next round."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.send_due()
            except AuthGateError:
                pass  # the database is away: try again next round
            except Exception:
                log.exception("%s round failed", self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()

    async def send_due(self) -> int:
        """Deliver every due row once; returns how many were delivered."""
        sent = 0
        for _ in range(self.claims_per_round):
            rows = await self.claim(self.clock.now(), LEASE, self.batch)
            if not rows:
                break
            for row in rows:
                sent += await self.deliver(row)
        return sent

    @abstractmethod
    async def claim(self, now: float, lease: float, limit: int) -> list[Row]: ...

    @abstractmethod
    async def deliver(self, row: Row) -> int:
        """Send one row and record the outcome; 1 when delivered, 0 when retried later."""
