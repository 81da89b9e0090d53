"""Stopping background tasks survives a lost cancellation (a hung shutdown stalled CI)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from authgate.tasks import cancel


async def swallows(times: int, ticks: list[int], until: asyncio.Event | None = None) -> None:
    """A loop that loses ``times`` cancellations, as a retrying client library can."""
    lost = 0
    while until is None or not until.is_set():
        try:
            await asyncio.sleep(0.01)
            ticks.append(1)
        except asyncio.CancelledError:
            if lost == times:
                raise
            lost += 1


async def test_a_lost_cancellation_is_repeated() -> None:
    ticks: list[int] = []
    task = asyncio.create_task(swallows(3, ticks))
    await asyncio.sleep(0.05)
    await asyncio.wait_for(cancel(task), 3)  # the old single cancel() waited forever
    assert task.cancelled()


async def test_a_task_that_never_stops_is_left_with_a_log_line(
        caplog: pytest.LogCaptureFixture) -> None:
    ticks: list[int] = []
    release = asyncio.Event()
    task = asyncio.create_task(swallows(10**9, ticks, release), name="stubborn")
    with caplog.at_level(logging.WARNING, logger="authgate"):
        await asyncio.wait_for(cancel(task, None, patience=0.3), 3)
    assert not task.done()
    assert "stubborn" in caplog.text
    release.set()
    await asyncio.wait_for(task, 3)
