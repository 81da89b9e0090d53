"""core/factors.py on its own (no HTTP), on every record backend, with a hand-moved clock:
encryption at rest, the ±1 step window, replay refusal, recovery codes, the mfa_token."""

from __future__ import annotations

import asyncio

import pyotp
import pytest
import sqlalchemy as sa

from authgate.clock import ManualClock
from authgate.core.factors import MFA_TOKEN_MAX_FAILURES, Factors, normalize_recovery
from authgate.engine import Engine
from authgate.errors import (
    InvalidCode,
    InvalidMfaToken,
    MfaAlreadyActive,
    NotFound,
    WrongCode,
    WrongPassword,
)
from authgate.models import User
from authgate.store import schema as t
from tests.unit.conftest import EngineFactory

PW = "correct battery horse stapler"


async def enrolled(engine: Engine, clock: ManualClock, name: str = "ann"
                   ) -> tuple[User, pyotp.TOTP, list[str]]:
    user = await engine.users.create_user(name, PW)
    enrolment = await engine.factors.enrol(user, PW)
    totp = pyotp.TOTP(enrolment.secret)
    codes = await engine.factors.confirm(user, totp.at(clock.now()))
    return user, totp, codes


async def test_secret_encrypted_at_rest_and_bound_to_its_user(engine: Engine) -> None:
    user = await engine.users.create_user("ann", PW)
    enrolment = await engine.factors.enrol(user, PW)
    assert enrolment.otpauth_uri.startswith("otpauth://totp/")
    stored = await engine.records.totp_factor(user.id)
    assert stored is not None and enrolment.secret not in stored.secret_enc
    assert engine.factors.decrypt(stored.secret_enc, user.id) == enrolment.secret
    assert engine.factors.decrypt(stored.secret_enc, "someone-else") is None
    other = Factors(engine.settings, engine.clock, engine.records, engine.signin,
                    engine.throttle, engine.events)
    other.set_key_material(b"another key entirely, 32 bytes!!")
    assert other.decrypt(stored.secret_enc, user.id) is None


async def test_mfa_key_setting_is_the_key(make_engine: EngineFactory) -> None:
    a = await make_engine(mfa_key="k" * 32)
    user = await a.users.create_user("ann", PW)
    await a.factors.enrol(user, PW)
    stored = await a.records.totp_factor(user.id)
    assert stored is not None
    b = Factors(a.settings, a.clock, a.records, a.signin, a.throttle, a.events)
    b.set_key_material(b"k" * 32)
    assert b.decrypt(stored.secret_enc, user.id) is not None


async def test_enrol_needs_the_password_and_once(engine: Engine, clock: ManualClock) -> None:
    user = await engine.users.create_user("ann", PW)
    with pytest.raises(WrongPassword):
        await engine.factors.enrol(user, "wrong")
    first = await engine.factors.enrol(user, PW)
    second = await engine.factors.enrol(user, PW)  # restarts: a new secret
    assert first.secret != second.secret
    assert await engine.factors.status(user.id) == ("enrolling", 0)
    with pytest.raises(InvalidCode):
        await engine.factors.confirm(user, pyotp.TOTP(first.secret).at(clock.now()))
    await engine.factors.confirm(user, pyotp.TOTP(second.secret).at(clock.now()))
    assert await engine.factors.status(user.id) == ("on", 10)
    with pytest.raises(MfaAlreadyActive):
        await engine.factors.enrol(user, PW)
    with pytest.raises(NotFound):
        await engine.factors.confirm(user, "123456")


async def test_window_and_replay(engine: Engine, clock: ManualClock) -> None:
    user, totp, _ = await enrolled(engine, clock)
    now = clock.now()
    assert await engine.factors.check_code(user.id, totp.at(now)) is None  # confirm used it
    assert await engine.factors.check_code(user.id, totp.at(now + 90)) is None  # too far
    assert await engine.factors.check_code(user.id, totp.at(now + 30)) == "totp"
    assert await engine.factors.check_code(user.id, totp.at(now + 30)) is None  # replay
    clock.advance(60)
    assert await engine.factors.check_code(user.id, totp.at(clock.now() - 30)) is None
    assert await engine.factors.check_code(user.id, totp.at(clock.now())) == "totp"
    assert await engine.factors.check_code(user.id, "12345") is None
    assert await engine.factors.check_code(user.id, 123456) is None


async def test_recovery_codes_once_hashed(engine: Engine, clock: ManualClock) -> None:
    user, _, codes = await enrolled(engine, clock)
    async with engine.db.read() as conn:
        stored = list((await conn.execute(sa.select(
            t.mfa_recovery_codes.c.code_hash))).scalars())
    assert len(stored) == 10 and not set(map(normalize_recovery, codes)) & set(stored)
    assert await engine.factors.check_code(user.id, f" {codes[0].upper()} ") == "recovery_code"
    assert await engine.factors.check_code(user.id, codes[0]) is None
    assert await engine.records.recovery_codes_left(user.id) == 9
    used: list[object] = []
    for _ in range(100):  # the background task may be storing it right now
        await engine.events.flush()
        events = await engine.audit.list_events(user_id=user.id)
        used = [e for e in events if e.type == "mfa.recovery_code_used"]
        if used:
            break
        await asyncio.sleep(0.02)
    assert len(used) == 1 and used[0].data["codes_left"] == 9  # type: ignore[attr-defined]


async def test_the_mfa_token(engine: Engine, clock: ManualClock) -> None:
    user, totp, _ = await enrolled(engine, clock)
    token = await engine.factors.start_pending(user, "pwd", flow="session", remember=True)
    with pytest.raises(InvalidMfaToken):  # another flow's
        await engine.factors.finish(token, totp.at(clock.now() + 30), "token")
    done = await engine.factors.finish(token, totp.at(clock.now() + 30), "session")
    assert done.user.id == user.id and done.amr == "pwd otp mfa" and done.data["remember"]
    with pytest.raises(InvalidMfaToken):  # spent
        await engine.factors.finish(token, totp.at(clock.now() + 30), "session")
    token = await engine.factors.start_pending(user, "pwd", flow="session")
    for _ in range(MFA_TOKEN_MAX_FAILURES - 1):
        with pytest.raises(InvalidCode):
            await engine.factors.finish(token, "000000", "session")
    with pytest.raises(InvalidMfaToken):
        await engine.factors.finish(token, "000000", "session")
    token = await engine.factors.start_pending(user, "pwd", flow="session")
    clock.advance(301)
    with pytest.raises(InvalidMfaToken):
        await engine.factors.finish(token, totp.at(clock.now()), "session")


async def test_remove_needs_password_and_code(engine: Engine, clock: ManualClock) -> None:
    user, _, codes = await enrolled(engine, clock)
    with pytest.raises(WrongPassword):
        await engine.factors.remove(user, "wrong", codes[0])
    with pytest.raises(WrongCode):
        await engine.factors.remove(user, PW, "000000")
    await engine.factors.remove(user, PW, codes[1])
    assert await engine.factors.status(user.id) == ("off", 0)
    assert not await engine.factors.active(user.id)
