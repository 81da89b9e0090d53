"""Injected time. Everything that decides an expiry asks a :class:`Clock`, so tests move time
instead of sleeping."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class SystemClock:
    """The real time."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock tests move by hand."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


class OffsetFileClock:
    """Real time plus an offset read from a file (test harness only).

    Not a setting: the CLI builds one when the test-only ``AUTHGATE_TEST_CLOCK_FILE``
    environment variable names a file (``authgate.cli.base.test_clock``) and injects it
    (``AuthGate(settings, clock=...)``), at start-up only, never from a request. A black-box
    test writes seconds into the file to move every worker's clock at once. The file is
    re-read when its modification time or size changes.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0.0
        self._stamp: tuple[int, int] | None = None

    def now(self) -> float:
        try:
            st = os.stat(self._path)
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                self._stamp = stamp
                self._offset = float(self._path.read_text().strip() or 0)
        except (OSError, ValueError):
            self._offset = 0.0
        return time.time() + self._offset
