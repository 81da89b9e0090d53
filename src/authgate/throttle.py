"""Login throttling per account and per client IP, with growing backoff.

* Account: after ``lock_threshold`` consecutive failures (at most 10) the account waits
  ``base * 2**(n - threshold)`` seconds (capped at an hour) before the next attempt is even
  checked; a success clears the count. Keyed by the normalised username whether or not the
  user exists, so a lock reveals nothing.
* IP: more than ``ip_limit`` failures in ``ip_window`` seconds (at most 100 in 15 minutes)
  refuses further attempts from that address until the window slides.

The in-memory store is per process; ``authgate.redis`` provides a shared one.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from authgate.clock import Clock

MAX_DELAY = 3600.0
BASE_DELAY = 2.0


class ThrottleStore(Protocol):
    async def retry_after(self, account: str, ip: str) -> float:
        """Seconds to wait before ``account`` may try from ``ip``; 0 when allowed."""
        ...

    async def failed(self, account: str, ip: str) -> None:
        ...

    async def succeeded(self, account: str) -> None:
        ...


@dataclass(slots=True)
class _Account:
    failures: int = 0
    locked_until: float = 0.0


@dataclass(slots=True)
class _Ip:
    times: deque[float] = field(default_factory=deque)


def account_delay(failures: int, threshold: int) -> float:
    if failures < threshold:
        return 0.0
    return min(MAX_DELAY, BASE_DELAY * float(2 ** min(failures - threshold, 20)))


class MemoryThrottle:
    """Throttle state in this process (the embedded default)."""

    def __init__(self, clock: Clock, lock_threshold: int = 5, ip_limit: int = 50,
                 ip_window: float = 900.0, max_entries: int = 100_000) -> None:
        self.clock = clock
        self.lock_threshold = lock_threshold
        self.ip_limit = ip_limit
        self.ip_window = ip_window
        self.max_entries = max_entries
        self._accounts: dict[str, _Account] = {}
        self._ips: dict[str, _Ip] = {}

    async def retry_after(self, account: str, ip: str) -> float:
        now = self.clock.now()
        wait = 0.0
        acc = self._accounts.get(account)
        if acc is not None and acc.locked_until > now:
            wait = acc.locked_until - now
        entry = self._ips.get(ip)
        if entry is not None:
            self._slide(entry, now)
            if len(entry.times) >= self.ip_limit:
                wait = max(wait, entry.times[0] + self.ip_window - now)
        return float(math.ceil(wait)) if wait > 0 else 0.0

    async def failed(self, account: str, ip: str) -> None:
        now = self.clock.now()
        self._bound(self._accounts)
        acc = self._accounts.setdefault(account, _Account())
        acc.failures += 1
        delay = account_delay(acc.failures, self.lock_threshold)
        if delay:
            acc.locked_until = now + delay
        self._bound(self._ips)
        entry = self._ips.setdefault(ip, _Ip())
        self._slide(entry, now)
        entry.times.append(now)

    async def succeeded(self, account: str) -> None:
        self._accounts.pop(account, None)

    def _slide(self, entry: _Ip, now: float) -> None:
        while entry.times and entry.times[0] <= now - self.ip_window:
            entry.times.popleft()

    def _bound(self, table: dict[str, _Account] | dict[str, _Ip]) -> None:
        if len(table) >= self.max_entries:  # forget the oldest tenth
            for key in list(table)[: self.max_entries // 10]:
                table.pop(key, None)
