"""Login throttling per account and per client IP, with growing backoff; and per-address
limits for the other unauthenticated writes (registration, revocation).

* Account: after ``lock_threshold`` consecutive failures (at most 10) the account waits
  ``2 s * 2**(n - threshold)`` (capped at an hour) before the next attempt is even checked;
  a success clears the count. Keyed by the normalised username whether or not the user
  exists, so a lock reveals nothing. The count is kept until a day after the last failure,
  so a slow attack keeps the long delays.
* Every attempt is *reserved* (counted) atomically before the password is hashed, and a
  success gives the reservation back: however many guesses arrive in parallel, at most
  ``lock_threshold`` of them are evaluated before the lock, then one per lock step.
* Device cookies (OWASP "Slow Down Online Guessing Attacks with Device Cookies"): an
  attempt that carries a valid device cookie of that user counts on that device's own
  counter instead of the account's, so failures from elsewhere never lock the owner's
  known browser out. A stolen device cookie gets its own lock, the same schedule.
* IP: ``ip_limit`` failures within ``ip_window`` seconds of the first (at most 100 in 15
  minutes) refuse further attempts from that address until the window ends. IPv6 clients
  count per /64 (:func:`address_key`).

The state lives where every worker and instance sees it: in the database by default
(:class:`authgate.store.db_throttle.DbThrottle`), in Redis when configured
(:class:`authgate.store.redis_throttle.RedisThrottle`); both are a
:class:`authgate.store.protocols.ThrottleStore`.
"""

from __future__ import annotations

import functools
import ipaddress
import math

MAX_DELAY = 3600.0
BASE_DELAY = 2.0
#: How long an account's (or device's) failures are remembered after the last one: the
#: lock schedule needs the count for as long as the attack goes on.
ACCOUNT_MEMORY = 86400.0


def account_delay(failures: int, threshold: int) -> float:
    """The lock after ``failures`` consecutive failures."""
    if failures < threshold:
        return 0.0
    return min(MAX_DELAY, BASE_DELAY * float(2 ** min(failures - threshold, 20)))


def wait_seconds(seconds: float) -> float:
    return float(math.ceil(seconds)) if seconds > 0 else 0.0


@functools.lru_cache(maxsize=4096)  # parsing an address costs more than the rest of a 429
def address_key(ip: str) -> str:
    """The per-address throttle key of a client address: IPv4 as is, IPv6 by its /64 (one
    customer's allocation: a client picks any address in it at will), an IPv4-mapped IPv6
    address as its IPv4 address. Anything else (no address known) is used as given."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)
