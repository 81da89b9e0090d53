"""The engine on its own (no HTTP), on every record backend, with a hand-moved clock."""

from __future__ import annotations

import ast
import asyncio
import math
import secrets
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from authgate.clock import ManualClock
from authgate.core.credentials import digest
from authgate.engine import Engine
from authgate.errors import (
    InvalidCredentials,
    InvalidGrant,
    InvalidToken,
    NotFound,
    PolicyError,
    Throttled,
    UsernameTaken,
)
from authgate.models import SessionRecord
from authgate.store import schema as t
from tests.unit.conftest import EngineFactory

PW = "correct battery horse stapler"


async def test_users_and_password_hashes(make_engine: EngineFactory) -> None:
    engine = await make_engine(password_hash_preset="default")  # the production parameters
    user = await engine.users.create_user("Alice", PW, ["admin"])
    assert user.roles == ("admin",)
    with pytest.raises(UsernameTaken):
        await engine.users.create_user("alice", PW)  # case-insensitive uniqueness
    stored = await engine.records.password_hash(user.id)
    assert stored is not None and stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert await engine.signin.check_password("ALICE", PW, "1.1.1.1") == user
    with pytest.raises(InvalidCredentials):
        await engine.signin.check_password("alice", PW[:-1], "1.1.1.1")


async def test_unknown_user_and_wrong_password_are_the_same_error(engine: Engine) -> None:
    await engine.users.create_user("bob", PW)
    errors = []
    for name, pw in (("bob", "wrong password here"), ("nobody", PW)):
        with pytest.raises(InvalidCredentials) as info:
            await engine.signin.check_password(name, pw, "2.2.2.2")
        errors.append((info.value.status, info.value.code, info.value.detail))
    assert errors[0] == errors[1]


async def test_hash_upgraded_on_login(make_engine: EngineFactory) -> None:
    weak = await make_engine(password_hash_preset="default")
    user = await weak.users.create_user("carol", PW)
    await weak.stop()
    strong = await make_engine(password_hash_preset="default", argon2_memory_kib=32768,
                               argon2_time_cost=3)
    await strong.signin.check_password("carol", PW, "3.3.3.3")
    stored = await strong.records.password_hash(user.id)
    assert stored is not None and "m=32768,t=3" in stored


async def test_policy() -> None:
    from authgate.passwords import check_policy

    for bad in ("short", "passwordpassword", "x" * 1025, "dave-the-user-1"):
        with pytest.raises(PolicyError):
            check_policy(bad, min_length=12, username="dave-the-user")
    check_policy("пароль-из-пятнадцати", min_length=12)
    check_policy("🔑" * 12, min_length=12)


async def test_session_idle_and_absolute_timeouts(make_engine: EngineFactory,
                                                  clock: ManualClock) -> None:
    engine = await make_engine(session_idle_ttl=600, session_absolute_ttl=1800,
                               session_touch_interval=0)
    await engine.users.create_user("erin", PW)
    value, _rec, _ = await engine.sessions.login("erin", PW)
    for _ in range(3):  # activity keeps it alive past the idle ttl...
        clock.advance(500)
        assert await engine.sessions.session_principal(value) is not None
    clock.advance(400)  # ...but never past the absolute ttl (1900 s > 1800 s)
    assert await engine.sessions.session_principal(value) is None
    value, _rec, _ = await engine.sessions.login("erin", PW)
    clock.advance(601)
    assert await engine.sessions.session_principal(value) is None


def align_to_second(clock: ManualClock) -> None:
    """Move the clock to the next whole second, exactly, so that the sums below are exact
    and a deadline can be hit to the last bit (``now + (ceil(now) - now)`` is ``ceil(now)``)."""
    clock.advance(math.ceil(clock.now()) - clock.now())
    assert clock.now() == math.ceil(clock.now())


async def test_q13_session_idle_deadline_is_exclusive(make_engine: EngineFactory,
                                                      clock: ManualClock) -> None:
    """A session is valid while ``now < last_seen + idle_ttl`` and not at that instant (as
    an access token is not at ``exp``), in the process that cached it and in one that reads
    it from the shared store."""
    engine = await make_engine(session_idle_ttl=600, session_absolute_ttl=1800,
                               session_touch_interval=0)
    fresh = await make_engine(session_idle_ttl=600, session_absolute_ttl=1800,
                              session_touch_interval=0)
    await engine.users.create_user("uma", PW)
    align_to_second(clock)
    used, _, _ = await engine.sessions.login("uma", PW)
    idle, rec, _ = await engine.sessions.login("uma", PW)
    deadline = clock.now() + 600
    assert rec.deadline() == deadline
    clock.advance(599.5)  # half a second before: valid (and ``used`` is used now)
    assert await engine.sessions.session_principal(used) is not None
    assert await fresh.sessions.session_principal(used) is not None
    clock.advance(0.5)
    assert clock.now() == deadline
    assert await fresh.sessions.session_principal(idle) is None   # read from Redis / the database
    assert await engine.sessions.session_principal(idle) is None  # its cached copy
    assert await engine.sessions.session_principal(used) is not None  # used at +599.5: not idle


async def test_q13_session_absolute_deadline_is_exclusive(make_engine: EngineFactory,
                                                          clock: ManualClock) -> None:
    """Activity keeps a session alive up to, and not including, ``created + absolute_ttl``."""
    engine = await make_engine(session_idle_ttl=600, session_absolute_ttl=1800,
                               session_touch_interval=0)
    await engine.users.create_user("vic", PW)
    align_to_second(clock)
    value, rec, _ = await engine.sessions.login("vic", PW)
    end = clock.now() + 1800
    assert rec.expires_at == end
    for step in (500, 500, 500, 299.5):  # used at +1799.5: half a second before the end
        clock.advance(step)
        assert await engine.sessions.session_principal(value) is not None
    clock.advance(0.5)
    assert clock.now() == end
    assert await engine.sessions.session_principal(value) is None


async def test_last_seen_written_at_most_every_interval(make_engine: EngineFactory,
                                                        clock: ManualClock) -> None:
    engine = await make_engine(session_touch_interval=60)
    await engine.users.create_user("frank", PW)
    value, rec, _ = await engine.sessions.login("frank", PW)

    async def stored_last_seen() -> float:
        async with engine.db.read() as conn:
            return float((await conn.execute(sa.select(t.sessions.c.last_seen_at).where(
                t.sessions.c.id == rec.id))).scalar_one())

    first = await stored_last_seen()
    clock.advance(30)
    await engine.sessions.session_principal(value)
    assert await engine.sessions.flush_touches() == 0  # nothing due within the interval
    assert await stored_last_seen() == first
    clock.advance(31)
    await engine.sessions.session_principal(value)
    # write-behind: the request itself wrote nothing; the next flush (every second) does
    assert await stored_last_seen() == first
    assert await engine.sessions.flush_touches() == 1
    assert await stored_last_seen() == pytest.approx(first + 61)


async def test_stop_writes_the_queued_last_seen_times(make_engine: EngineFactory,
                                                      clock: ManualClock) -> None:
    engine = await make_engine(session_touch_interval=60)
    await engine.users.create_user("fiona", PW)
    value, rec, _ = await engine.sessions.login("fiona", PW)
    clock.advance(61)
    await engine.sessions.session_principal(value)
    await engine.stop()
    again = await make_engine()  # another process on the same database
    async with again.db.read() as conn:
        stored = float((await conn.execute(sa.select(t.sessions.c.last_seen_at).where(
            t.sessions.c.id == rec.id))).scalar_one())
    assert stored == pytest.approx(rec.created_at + 61)


async def test_only_the_hash_of_a_session_id_is_stored(engine: Engine) -> None:
    await engine.users.create_user("gina", PW)
    value, rec, _ = await engine.sessions.login("gina", PW)
    assert len(value) >= 43 and rec.token_hash == digest(value)
    async with engine.db.read() as conn:
        rows = (await conn.execute(sa.select(t.sessions))).mappings().all()
    assert all(value not in str(dict(r)) for r in rows)


async def test_revocation_reaches_another_process_within_a_poll(
        make_engine: EngineFactory) -> None:
    a = await make_engine(revocation_poll_interval=0.05)
    b = await make_engine(revocation_poll_interval=0.05)
    await a.users.create_user("hank", PW)
    value, _, user = await a.sessions.login("hank", PW)
    assert await b.sessions.session_principal(value) is not None  # b caches it now
    pair = await a.grants.password_grant("hank", PW)
    assert (await b.grants.token_principal(pair.access_token)).user.id == user.id
    await a.sessions.logout_everywhere(user)

    async def token_refused() -> bool:
        try:
            await b.grants.token_principal(pair.access_token)
        except InvalidToken:
            return True
        return False

    # Polled with a deadline (the contract's one second), not slept on.
    deadline = time.monotonic() + 1.0
    while await b.sessions.session_principal(value) is not None or not await token_refused():
        assert time.monotonic() < deadline, "b still accepts after 1 s"
        await asyncio.sleep(0.01)
    assert await b.sessions.session_principal(value) is None


async def test_ten_concurrent_refreshes_one_wins(engine: Engine) -> None:
    await engine.users.create_user("ivy", PW)
    pair = await engine.grants.password_grant("ivy", PW)
    results = await asyncio.gather(*[engine.grants.refresh_grant(pair.refresh_token)
                                     for _ in range(10)], return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, InvalidGrant) for r in results if r not in winners), results


async def test_refresh_reuse_revokes_the_family(engine: Engine) -> None:
    await engine.users.create_user("jack", PW)
    first = await engine.grants.password_grant("jack", PW)
    second = await engine.grants.refresh_grant(first.refresh_token)
    with pytest.raises(InvalidGrant):
        await engine.grants.refresh_grant(first.refresh_token)
    with pytest.raises(InvalidGrant):
        await engine.grants.refresh_grant(second.refresh_token)
    with pytest.raises(InvalidToken):
        await engine.grants.token_principal(second.access_token)


async def test_family_lifetime_is_not_extended_by_rotation(make_engine: EngineFactory,
                                                           clock: ManualClock) -> None:
    engine = await make_engine(refresh_token_ttl=3600)
    await engine.users.create_user("kate", PW)
    pair = await engine.grants.password_grant("kate", PW)
    for _ in range(3):
        clock.advance(1000)
        pair = await engine.grants.refresh_grant(pair.refresh_token)
    clock.advance(700)
    with pytest.raises(InvalidGrant):
        await engine.grants.refresh_grant(pair.refresh_token)


async def test_max_sessions_evicts_least_recently_used(make_engine: EngineFactory,
                                                       clock: ManualClock) -> None:
    engine = await make_engine(max_sessions_per_user=2, session_touch_interval=0)
    await engine.users.create_user("liam", PW)
    first, _, _ = await engine.sessions.login("liam", PW)
    clock.advance(1)
    second, _, _ = await engine.sessions.login("liam", PW)
    clock.advance(1)
    assert await engine.sessions.session_principal(first) is not None  # first is now the fresher
    clock.advance(1)
    third, _, _ = await engine.sessions.login("liam", PW)
    assert await engine.sessions.session_principal(second) is None
    assert await engine.sessions.session_principal(first) is not None
    assert await engine.sessions.session_principal(third) is not None


async def test_revoke_someone_elses_entry_is_not_found(engine: Engine) -> None:
    await engine.users.create_user("mia", PW)
    await engine.users.create_user("ned", PW)
    _, mia_session, _ = await engine.sessions.login("mia", PW)
    ned_value, _, _ = await engine.sessions.login("ned", PW)
    ned = await engine.sessions.session_principal(ned_value)
    assert ned is not None
    with pytest.raises(NotFound):
        await engine.sessions.revoke_sign_in(ned, mia_session.id)


async def test_account_throttle_backoff_grows_and_success_resets(make_engine: EngineFactory,
                                                                 clock: ManualClock) -> None:
    engine = await make_engine(account_lock_threshold=3)
    await engine.users.create_user("olga", PW)
    for _ in range(3):
        with pytest.raises(InvalidCredentials):
            await engine.signin.check_password("olga", "wrong wrong wrong", "9.9.9.1")
    with pytest.raises(Throttled) as first:
        await engine.signin.check_password("olga", PW, "9.9.9.2")  # right password, still locked
    clock.advance(first.value.retry_after)
    with pytest.raises(InvalidCredentials):
        await engine.signin.check_password("olga", "wrong wrong wrong", "9.9.9.3")
    with pytest.raises(Throttled) as second:
        await engine.signin.check_password("olga", PW, "9.9.9.4")
    assert second.value.retry_after > first.value.retry_after
    clock.advance(second.value.retry_after)
    await engine.signin.check_password("olga", PW, "9.9.9.5")
    with pytest.raises(InvalidCredentials):  # the count was reset: no lock after one failure
        await engine.signin.check_password("olga", "wrong wrong wrong", "9.9.9.6")
    await engine.signin.check_password("olga", PW, "9.9.9.7")


async def test_disable_ends_everything(engine: Engine) -> None:
    user = await engine.users.create_user("pia", PW)
    value, _, _ = await engine.sessions.login("pia", PW)
    pair = await engine.grants.password_grant("pia", PW)
    await engine.users.set_disabled(user, True)
    assert await engine.sessions.session_principal(value) is None
    with pytest.raises(InvalidToken):
        await engine.grants.token_principal(pair.access_token)
    with pytest.raises(InvalidGrant):
        await engine.grants.refresh_grant(pair.refresh_token)
    with pytest.raises(InvalidCredentials):
        await engine.sessions.login("pia", PW)
    await engine.users.set_disabled(user, False)
    assert (await engine.sessions.login("pia", PW))[2].id == user.id


async def test_purge_deletes_expired(make_engine: EngineFactory, clock: ManualClock) -> None:
    engine = await make_engine(session_idle_ttl=60, session_absolute_ttl=120)
    await engine.users.create_user("quinn", PW)
    await engine.sessions.login("quinn", PW)
    clock.advance(121)
    counts = await engine.purge()
    assert counts["sessions"] == 1


def loaded(imports: str, packages: tuple[str, ...]) -> list[str]:
    """Which modules of ``packages`` a fresh interpreter holds after ``import {imports}``."""
    code = (f"import sys, {imports}; "
            f"print([m for m in sys.modules if m.split('.')[0] in {packages!r}])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return list(ast.literal_eval(done.stdout.strip()))


def test_engine_imports_no_web_framework() -> None:
    assert loaded("authgate.engine, authgate.cli",
                  ("fastapi", "starlette", "uvicorn", "jinja2")) == []


def test_webauthn_is_loaded_by_the_first_passkey_ceremony_only() -> None:
    """~40 ms and ~5 MB per process (every CLI command, every worker) for a library that
    only the passkey ceremonies use."""
    assert loaded("authgate.engine, authgate.cli, authgate.web.app", ("webauthn",)) == []
    ceremony = ("authgate.core.passkeys as p; "
                "p.algorithms()")  # what registration_options() asks for first
    assert "webauthn" in loaded(ceremony, ("webauthn",))


async def test_a_principal_is_reused_only_while_nothing_it_says_has_changed(
        make_engine: EngineFactory) -> None:
    """The request path reuses the principal it made for a credential (no rebuild per
    request) only while the record and the user are the very same: a role change, a
    disabled user or a revoked key is seen on the next request."""
    engine = await make_engine(role_scopes={"user": ["profile"],
                                            "admin": ["profile", "reports:read"]})
    assert engine.api_keys is not None
    user = await engine.users.create_user("rita", PW, ["user"])
    value, _, _ = await engine.sessions.login("rita", PW)
    pair = await engine.grants.password_grant("rita", PW)
    key, _ = await engine.api_keys.create(user, "ci", ["profile"])
    session = await engine.sessions.session_principal(value)
    token = await engine.grants.token_principal(pair.access_token)
    api_key = await engine.api_keys.principal(key)
    assert session is await engine.sessions.session_principal(value)
    assert token is await engine.grants.token_principal(pair.access_token)
    assert api_key is await engine.api_keys.principal(key)

    await engine.users.set_roles(user, ["admin"])
    after = await engine.sessions.session_principal(value)
    assert after is not None and after is not session and after.user.roles == ("admin",)
    assert session is not None and after.scopes != session.scopes
    with pytest.raises(InvalidToken):  # issued with the old roles
        await engine.grants.token_principal(pair.access_token)
    assert (await engine.api_keys.principal(key)).user.roles == ("admin",)

    await engine.users.set_disabled(after.user, True)
    assert await engine.sessions.session_principal(value) is None
    with pytest.raises(InvalidToken):
        await engine.api_keys.principal(key)



async def test_a_principal_is_reused_for_every_cached_session_however_many(
        make_engine: EngineFactory) -> None:
    """The principal memo holds an entry exactly while the session cache holds the session:
    with more active sessions than any fixed memo size (it was 10,000, cleared when full),
    each request still reuses what was made, instead of making short-lived objects that
    set off full garbage collections (~200 ms pauses with 100,000 cached sessions)."""
    engine = await make_engine()
    user = await engine.users.create_user("many", PW, ["user"])
    now = engine.clock.now()
    values = [secrets.token_urlsafe(32) for _ in range(12_000)]
    for value in values:
        engine.hot.sessions.put(digest(value), SessionRecord(
            id=secrets.token_hex(8), token_hash=digest(value), user_id=user.id,
            csrf_token="c", created_at=now, last_seen_at=now, expires_at=now + 3600,
            idle_ttl=3600))
    first = [await engine.sessions.session_principal(value) for value in values]
    again = [await engine.sessions.session_principal(value) for value in values]
    assert all(p is not None for p in first)
    assert sum(a is b for a, b in zip(first, again, strict=True)) == len(values)
    memo = engine.hot.session_principals
    assert len(memo) == len(values)
    engine.hot.sessions.pop(digest(values[0]))  # the cache lets one go: so does the memo
    assert len(memo) == len(values) - 1
    engine.hot.sessions.clear()
    assert len(memo) == 0


async def test_the_token_cache_holds_each_claim_name_and_issuer_once(
        make_engine: EngineFactory) -> None:
    """A cached token holds only what is its own: claim names and the values every token
    repeats (issuer, audience, client, scope) are shared, so ``TOKEN_CACHE_MB`` holds
    ~40% more tokens (1 MiB: ~430 before, ~600 now)."""
    engine = await make_engine(token_cache_mb=1)
    user = await engine.users.create_user("tok", PW, ["user"])
    now = engine.clock.now()
    tokens = [engine.tokens.issue(sub=user.id, scope="profile", roles=["user"],
                                  family_id=secrets.token_hex(16), now=now)[0]
              for _ in range(700)]
    for token in tokens:
        assert (await engine.grants.token_principal(token)).user.id == user.id
    assert len(engine.hot.verified) >= 560
    first, last = engine.hot.verified.get(tokens[-1]), engine.hot.verified.get(tokens[-2])
    assert first is not None and last is not None and first == engine.tokens.verify(
        tokens[-1], now)  # the same claims, types included
    assert all(a is b for a, b in zip(first, last, strict=True))  # the names: one copy
    assert first["iss"] is last["iss"] and first["aud"] is last["aud"]
