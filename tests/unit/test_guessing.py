"""Credential-guessing detection (core/guessing.py): the counter on its own with a hand-moved
clock, then the engine behind ``authenticate`` on every backend: a blocked address's
unknown session cookie is refused without one query of the sessions table."""

from __future__ import annotations

import logging
import secrets
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.requests import HTTPConnection

from authgate.clock import ManualClock
from authgate.core.guessing import GuessWatch
from authgate.errors import NotAuthenticated, Throttled
from authgate.web.authn import authenticate
from tests.unit.conftest import EngineFactory

PW = "correct battery horse stapler"


def watch(limit: int = 3, window: int = 60) -> tuple[GuessWatch, ManualClock, list[Any]]:
    clock, blocks = ManualClock(), []
    return GuessWatch(limit, window, clock, lambda a, n: blocks.append((a, n))), clock, blocks


def test_the_limit_th_refusal_blocks_for_one_window() -> None:
    guard, clock, blocks = watch()
    assert not guard.blocks
    assert [guard.refused("10.0.0.1") for _ in range(3)] == [False, False, True]
    assert guard.blocks and blocks == [("10.0.0.1", 3)]
    assert guard.blocked("10.0.0.1") == 60 and guard.blocked("10.0.0.2") == 0
    clock.advance(59.5)
    assert guard.blocked("10.0.0.1") == 1
    clock.advance(1)
    assert guard.blocked("10.0.0.1") == 0 and not guard.blocks
    assert guard.refused("10.0.0.1") is False  # a fresh count after the block


def test_refusals_spread_over_more_than_a_window_never_block() -> None:
    guard, clock, blocks = watch()
    for _ in range(10):
        guard.refused("10.0.0.1")
        guard.refused("10.0.0.1")
        clock.advance(61)
    assert blocks == [] and not guard.blocks


def test_ipv6_counts_per_64_and_limit_0_is_off() -> None:
    guard, _, blocks = watch()
    for host in ("2001:db8::1", "2001:db8::2", "2001:db8:0:0:ffff::3"):
        guard.refused(host)
    assert blocks == [("2001:db8::/64", 3)]
    assert guard.blocked("2001:db8::abcd") == 60 and guard.blocked("2001:db8:1::1") == 0
    off, _, none = watch(limit=0)
    assert not any(off.refused("10.0.0.1") for _ in range(1000))
    assert none == [] and not off.blocks


def test_the_block_ends_with_one_line_counting_what_it_refused(
        caplog: pytest.LogCaptureFixture) -> None:
    guard, clock, _ = watch()
    for _ in range(3 + 7):
        guard.refused("10.0.0.1")
    clock.advance(61)
    with caplog.at_level(logging.WARNING, "authgate"):
        guard.blocked("10.0.0.9")  # any check ends the blocks that are over
    assert [r.getMessage() for r in caplog.records] == [
        "credential-guessing block on 10.0.0.1 ended; 7 more refused during it"]


def conn(cookie: str, client: str) -> HTTPConnection:
    return HTTPConnection({"type": "http", "method": "GET", "path": "/auth/me",
                           "headers": [(b"cookie", f"__Host-authgate={cookie}".encode())],
                           "client": (client, 40000), "query_string": b""})


async def test_a_blocked_address_costs_the_database_nothing(make_engine: EngineFactory) -> None:
    engine = await make_engine(credential_guess_limit=5)
    await engine.users.create_user("kim", PW)
    value, _, _ = await engine.sessions.login("kim", PW)
    queries: list[str] = []

    def seen(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        if "sessions" in statement:
            queries.append(statement)

    sa.event.listen(engine.db.engine.sync_engine, "before_cursor_execute", seen)
    for _ in range(5):
        with pytest.raises(NotAuthenticated):
            await authenticate(engine, conn(secrets.token_urlsafe(32), "10.0.0.7"))
    assert queries  # before the block, an unknown cookie is looked up
    queries.clear()
    for _ in range(50):
        with pytest.raises(Throttled) as refused:
            await authenticate(engine, conn(secrets.token_urlsafe(32), "10.0.0.7"))
        assert refused.value.retry_after == 60 and refused.value.quiet
    assert queries == []
    # the same address's session this process holds, and another address: as ever
    assert (await authenticate(engine, conn(value, "10.0.0.7"))).user.username == "kim"
    with pytest.raises(NotAuthenticated):
        await authenticate(engine, conn(secrets.token_urlsafe(32), "10.0.0.8"))
    assert queries
