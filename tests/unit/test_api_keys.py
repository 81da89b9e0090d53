"""The API-key service on its own (no HTTP), on every record backend, with a hand-moved
clock: from memory once seen, last use written at most once a minute and off the request
path, scopes narrowed by the user's current roles, revocation and purge."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest
import sqlalchemy as sa

from authgate.clock import ManualClock
from authgate.core import api_keys as ak
from authgate.core.credentials import digest
from authgate.engine import Engine
from authgate.errors import (
    InsufficientScope,
    InteractiveSignInRequired,
    InvalidRequest,
    InvalidToken,
    NotFound,
    TooManyApiKeys,
)
from authgate.models import Principal, User
from authgate.store import schema as t
from tests.unit.conftest import EngineFactory

PW = "correct battery horse stapler"


async def stored(engine: Engine, key_id: str) -> dict[str, object]:
    async with engine.db.read() as conn:
        row = (await conn.execute(sa.select(t.api_keys).where(t.api_keys.c.id == key_id))
               ).mappings().one()
    return dict(row)


async def user(engine: Engine, roles: list[str] | None = None) -> User:
    return await engine.users.create_user("kim", PW, roles or ["reports", "billing"])


async def test_key_format_and_only_its_digest_is_stored(engine: Engine) -> None:
    u = await user(engine)
    key, rec = await engine.api_keys.create(u, "ci")
    assert re.fullmatch(r"ag_[A-Za-z0-9_-]{43}", key)
    row = await stored(engine, rec.id)
    assert row["digest"] == digest(key) and key not in str(row)
    assert key.removeprefix("ag_") not in str(row)
    assert sorted(rec.scopes) == ["billing", "reports"]
    p = await engine.api_keys.principal(key)
    assert p.auth == "api_key" and p.user.id == u.id and p.api_key is not None
    assert p.amr == () and p.auth_time is None and not p.mfa  # never satisfies step-up


async def test_a_seen_key_is_checked_from_memory(engine: Engine,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    u = await user(engine)
    key, _ = await engine.api_keys.create(u, "ci")
    await engine.api_keys.principal(key)
    reads: list[str] = []

    async def counting(key_hash: str) -> None:
        reads.append(key_hash)
        return None

    monkeypatch.setattr(engine.records, "get_api_key", counting)
    for _ in range(50):
        assert (await engine.api_keys.principal(key)).user.id == u.id
    assert reads == []
    with pytest.raises(InvalidToken):  # an unknown key is read once, then remembered
        await engine.api_keys.principal("ag_" + "x" * 43)
    with pytest.raises(InvalidToken):
        await engine.api_keys.principal("ag_" + "x" * 43)
    assert len(reads) == 1


async def test_last_use_is_written_at_most_once_a_minute_off_the_request_path(
        engine: Engine, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    u = await user(engine)
    key, rec = await engine.api_keys.create(u, "ci")
    writes: list[dict[str, float]] = []
    real = engine.records.touch_api_keys

    async def counting(used: Mapping[str, float]) -> None:
        writes.append(dict(used))
        await real(used)

    monkeypatch.setattr(engine.records, "touch_api_keys", counting)
    first = clock.now()
    for _ in range(20):
        await engine.api_keys.principal(key)
    assert writes == []  # nothing written by the requests themselves
    await engine.api_keys.flush()
    assert writes == [{rec.id: first}]
    assert (await stored(engine, rec.id))["last_used_at"] == first
    clock.advance(30)
    for _ in range(20):
        await engine.api_keys.principal(key)
    await engine.api_keys.flush()
    assert len(writes) == 1  # within the minute: nothing to store
    [listed] = await engine.api_keys.user_keys(u.id)
    assert listed.last_used_at == clock.now()  # but this process knows the exact last use
    clock.advance(31)
    await engine.api_keys.principal(key)
    await engine.api_keys.flush()
    assert writes[-1] == {rec.id: clock.now()} and len(writes) == 2
    assert (await stored(engine, rec.id))["last_used_at"] == clock.now()


async def test_stop_stores_the_pending_last_use(make_engine: EngineFactory,
                                                clock: ManualClock) -> None:
    engine = await make_engine()
    u = await user(engine)
    key, rec = await engine.api_keys.create(u, "ci")
    await engine.api_keys.principal(key)
    await engine.api_keys.stop()
    assert (await stored(engine, rec.id))["last_used_at"] == clock.now()


async def test_scopes_narrow_with_the_users_roles(engine: Engine) -> None:
    u = await user(engine)
    key, _ = await engine.api_keys.create(u, "ci", ["reports", "billing"])
    assert sorted((await engine.api_keys.principal(key)).scopes) == ["billing", "reports"]
    await engine.users.set_roles(u, ["billing"])
    assert (await engine.api_keys.principal(key)).scopes == ("billing",)
    fresh = await engine.users.get_user(u.id)
    assert fresh is not None
    await engine.users.set_roles(fresh, ["billing", "reports", "admin"])
    # the key never widens past what it was created with
    assert sorted((await engine.api_keys.principal(key)).scopes) == ["billing", "reports"]


async def test_create_checks_its_input(engine: Engine) -> None:
    u = await user(engine)
    with pytest.raises(InsufficientScope):
        await engine.api_keys.create(u, "ci", ["admin"])
    with pytest.raises(InsufficientScope):  # a subset of the caller's, not only the user's
        await engine.api_keys.create(u, "ci", ["billing"], allowed=("reports",))
    for bad in ({"name": ""}, {"name": 3}, {"name": "a\nb"}, {"scopes": "reports"},
                {"expires_in": 0}, {"expires_in": True}, {"expires_in": 1.5}):
        args: dict[str, object] = {"name": "ci", **bad}
        with pytest.raises(InvalidRequest):
            await engine.api_keys.create(u, **args)  # type: ignore[arg-type]
    key, _ = await engine.api_keys.create(u, "ci")
    machine = await engine.api_keys.principal(key)
    with pytest.raises(InteractiveSignInRequired):
        await engine.api_keys.create_for_caller(machine, "child")
    session = Principal(user=u, auth="session", scopes=("reports",))
    _, child = await engine.api_keys.create_for_caller(session, "from a session")
    assert child.scopes == ("reports",)


async def test_at_most_so_many_keys_per_user(engine: Engine,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ak, "MAX_KEYS_PER_USER", 3)
    u = await user(engine)
    made = [await engine.api_keys.create(u, f"k{i}") for i in range(3)]
    with pytest.raises(TooManyApiKeys):
        await engine.api_keys.create(u, "one too many")
    await engine.api_keys.revoke(u.id, made[0][1].id)
    await engine.api_keys.create(u, "room again")


async def test_expiry_revocation_and_purge(engine: Engine, clock: ManualClock) -> None:
    u = await user(engine)
    short, short_rec = await engine.api_keys.create(u, "short", expires_in=60)
    gone, gone_rec = await engine.api_keys.create(u, "gone")
    await engine.api_keys.principal(short)
    await engine.api_keys.principal(gone)
    await engine.api_keys.revoke(u.id, gone_rec.id)
    with pytest.raises(InvalidToken):
        await engine.api_keys.principal(gone)
    with pytest.raises(NotFound):
        await engine.api_keys.revoke(u.id, gone_rec.id)
    with pytest.raises(NotFound):
        await engine.api_keys.revoke("someone-else", short_rec.id)
    clock.advance(61)
    with pytest.raises(InvalidToken):
        await engine.api_keys.principal(short)
    assert await engine.api_keys.user_keys(u.id) == []
    assert (await engine.purge())["api_keys"] == 0  # kept an hour for the record
    clock.advance(3600)
    assert (await engine.purge())["api_keys"] == 2


async def test_revocation_reaches_another_engine(make_engine: EngineFactory) -> None:
    a = await make_engine()
    b = await make_engine()
    u = await user(a)
    key, rec = await a.api_keys.create(u, "ci")
    await b.api_keys.principal(key)  # cached in b
    await a.api_keys.revoke(u.id, rec.id)
    await b.hot.poll()  # the database log (the backstop every bus is in front of)
    with pytest.raises(InvalidToken):
        await b.api_keys.principal(key)


async def test_disabling_or_deleting_the_user_stops_the_key(make_engine: EngineFactory
                                                            ) -> None:
    a = await make_engine()
    b = await make_engine()
    u = await user(a)
    key, _ = await a.api_keys.create(u, "ci")
    await b.api_keys.principal(key)
    await a.users.set_disabled(u, True)
    await b.hot.poll()
    with pytest.raises(InvalidToken):
        await b.api_keys.principal(key)
    await a.users.set_disabled(u, False)
    await b.hot.poll()
    await b.api_keys.principal(key)
    await a.revocations.everything_of(u.id)  # log out everywhere: keys are for machines
    await b.hot.poll()
    await b.api_keys.principal(key)
    await a.account.delete(Principal(user=u, auth="session", scopes=()), PW, "1.2.3.4")
    await refused_soon(b, key)
    assert await a.records.get_api_key(digest(key)) is None  # gone with its user


async def refused_soon(engine: Engine, key: str, within: float = 1.0) -> None:
    """The key is refused by ``engine`` within ``within`` seconds (the buses deliver)."""
    import asyncio
    import time

    deadline = time.monotonic() + within
    while True:
        try:
            await engine.api_keys.principal(key)
        except InvalidToken:
            return
        assert time.monotonic() < deadline, "still accepted"
        await asyncio.sleep(0.01)


async def test_deleting_a_user_logs_its_revocation(engine: Engine, clock: ManualClock) -> None:
    """The delete itself is logged: a process that re-read (and cached) the user after the
    account's earlier revocations drops it at its next poll, bus or no bus — else the API
    keys it has cached would outlive their user there."""
    u = await user(engine)
    cursor = await engine.records.revocation_cursor()
    assert await engine.records.delete_user(u.id, logged_at=clock.now())
    events, _ = await engine.records.revocations_since(cursor)
    assert f"user:{u.id}" in [key for _, key, _ in events]
