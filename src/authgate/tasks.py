"""Background tasks: the one way authgate stops them."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

log = logging.getLogger("authgate")


async def cancel(*tasks: asyncio.Task[Any] | None, patience: float = 5.0) -> None:
    """Cancel ``tasks`` (``None`` entries are skipped) and wait until they have stopped.

    A cancellation can be lost: on Python 3.11 ``asyncio.timeout`` turns a ``cancel()`` that
    lands as its own deadline expires into ``TimeoutError``, and a client library that
    retries on timeouts (redis-py's ``get_message(timeout=…)``) then loops on as if nothing
    happened. So the request is repeated until the task ends, and after ``patience`` seconds
    the task is left behind with a log line rather than hanging the shutdown.
    """
    pending = {task for task in tasks if task is not None and not task.done()}
    deadline = time.monotonic() + patience
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - time.monotonic()
        if left <= 0:
            log.warning("background tasks did not stop within %.0f s: %s", patience,
                        ", ".join(sorted(task.get_name() for task in pending)))
            return
        _, pending = await asyncio.wait(pending, timeout=min(0.2, left))
    for ended in tasks:
        if ended is not None and ended.done() and not ended.cancelled():
            exc = ended.exception()
            if exc is not None:
                log.debug("background task %s ended with %r", ended.get_name(), exc)
