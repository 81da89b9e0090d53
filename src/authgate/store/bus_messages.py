"""The wire format every revocation bus shares: ``@<sent at>`` then one key per line."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator

#: The PostgreSQL ``LISTEN``/``pg_notify`` channel.
CHANNEL = "authgate_revocations"


class Done:
    """An awaitable that is complete already: a bus whose work is synchronous returns it, so
    callers may await every bus alike (``await bus.publish(keys)``) or not at all."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        yield from ()


DONE = Done()


def receive(payload: str, apply: Callable[[str], None],
            delay: Callable[[float], None] | None) -> None:
    """Apply one message: ``@<sent at>`` then one revocation key per line."""
    for line in payload.split("\n"):
        if line.startswith("@"):
            if delay is not None:
                with contextlib.suppress(ValueError):
                    delay(max(0.0, time.time() - float(line[1:])))
        elif line:
            apply(line)


def batches(keys: list[str], limit: int) -> list[str]:
    """``keys`` joined by newlines in pieces of at most ``limit`` bytes (a datagram, or a
    ``pg_notify`` payload, which PostgreSQL caps at 8000 bytes), each starting with the
    time it was sent (``@<epoch seconds>``: the receiver measures the delay)."""
    stamp = f"@{time.time():.6f}"
    out: list[str] = []
    current: list[str] = [stamp]
    size = len(stamp)
    for key in keys:
        if len(current) > 1 and size + len(key) + 1 > limit:
            out.append("\n".join(current))
            current, size = [stamp], len(stamp)
        current.append(key)
        size += len(key) + 1
    if len(current) > 1:
        out.append("\n".join(current))
    return out
