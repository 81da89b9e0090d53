"""Credential guessing (SESS-24): an address that keeps sending credentials that do not
count is noticed, and stopped from costing the backends anything.

Every credential a request sends and the engine refuses (an unknown, expired or revoked
session; an invalid access token or API key) counts against the client's address (IPv6 by
its /64, as the login throttle counts). ``limit`` of them within ``window`` seconds of the
first block the address for ``window`` seconds: one ``credentials.guessing`` security event
(the audit trail, the webhooks, a WARNING log line), then, until the block ends,

* a session cookie or API key that this process does not hold in memory is answered 429
  without a Redis or database read: random values each missed every cache and cost a
  round trip, so a flood of them was a flood of queries. A credential this process already
  holds (its users' active sessions) is checked as usual, so a valid user behind the same
  address keeps working; an access token is always verified (locally: no backend);
* the refusals are not logged one by one (a flood of log lines is a flood too): the block's
  event says it started, one line when it ends says how many were refused meanwhile.

The count is this process's own (no round trip on the refusal path); with N workers an
address may send up to N times ``limit`` before every worker blocks it. ``limit`` 0 turns it off.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from authgate.clock import Clock
from authgate.hotstate import BoundedCache
from authgate.throttle import address_key

log = logging.getLogger("authgate")

#: Addresses counted at once (the least recently refused are forgotten first).
CAPACITY = 10_000


class Uncached(Exception):  # a signal between the engine and authn, not an error
    """The credential is not in this process's memory and the caller may not read the
    backends for it (the address is blocked)."""


class GuessWatch:
    def __init__(self, limit: int, window: int, clock: Clock,
                 on_block: Callable[[str, int], None]) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._on_block = on_block  # (address, refusals in the window): the event
        self._counts: BoundedCache[str, list[float]] = BoundedCache(CAPACITY)
        #: address -> [blocked until, refusals during the block], in order of blocking.
        #: Read-only outside: its truth value is the per-request check (a request works out
        #: its address only while some address is blocked).
        self.blocks: dict[str, list[float]] = {}

    def blocked(self, address: str) -> int:
        """Seconds left of ``address``'s block (0: not blocked)."""
        now = self.clock.now()
        self._expire(now)
        entry = self.blocks.get(address_key(address))
        return math.ceil(entry[0] - now) if entry is not None else 0

    def refused(self, address: str) -> bool:
        """Count one refused credential from ``address``; True when it is blocked (then the
        refusal is not worth a log line of its own)."""
        if self.limit <= 0:
            return False
        key = address_key(address)
        now = self.clock.now()
        self._expire(now)
        entry = self.blocks.get(key)
        if entry is not None:
            entry[1] += 1
            return True
        count = self._counts.get(key)
        if count is None or now - count[0] >= self.window:
            count = [now, 0.0]
            self._counts.put(key, count)
        count[1] += 1
        if count[1] < self.limit:
            return False
        self._counts.pop(key)
        if len(self.blocks) >= CAPACITY:  # the oldest block ends early: memory is bounded
            self._end(next(iter(self.blocks)))
        self.blocks[key] = [now + self.window, 0.0]
        self._on_block(key, int(count[1]))
        return True

    def _expire(self, now: float) -> None:
        # Blocks end in the order they began (one window for all): look at the oldest only.
        while self.blocks:
            key = next(iter(self.blocks))
            if self.blocks[key][0] > now:
                return
            self._end(key)

    def _end(self, key: str) -> None:
        _, during = self.blocks.pop(key)
        log.warning("credential-guessing block on %s ended; %d more refused during it", key,
                    int(during), extra={"ip": key, "refused": int(during)})
