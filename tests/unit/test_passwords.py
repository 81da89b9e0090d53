"""The password hasher's presets: the production parameters and argon2-cffi's cheapest one."""

from __future__ import annotations

import argon2

from authgate.passwords import PasswordHasher
from authgate.settings import Settings

PW = "correct battery horse stapler"
PRODUCTION = "$argon2id$v=19$m=19456,t=2,p=1$"


def hasher(**settings: object) -> PasswordHasher:
    return PasswordHasher.from_settings(Settings(**settings).passwords)  # type: ignore[arg-type]


async def test_the_default_preset_is_the_production_hash() -> None:
    stored = await hasher().hash(PW)
    assert stored.startswith(PRODUCTION)
    stronger = await hasher(argon2_memory_kib=32768, argon2_time_cost=3).hash(PW)
    assert stronger.startswith("$argon2id$v=19$m=32768,t=3,p=1$")


async def test_the_test_preset_is_argon2_cffis_cheapest_and_still_verifies() -> None:
    cheap, production = hasher(password_hash_preset="test"), hasher()
    stored = await cheap.hash(PW)
    params = argon2.extract_parameters(stored)
    assert params == argon2.profiles.CHEAPEST
    for checker in (cheap, production):  # a hash verifies whatever the current preset
        assert await checker.verify(stored, PW)
        assert not await checker.verify(stored, PW + "x")
    assert not await cheap.verify(None, PW)  # unknown users: the dummy hash, same preset
    assert argon2.extract_parameters(await cheap.dummy_hash()) == argon2.profiles.CHEAPEST


async def test_rehash_upgrades_to_production_and_never_down_to_the_test_preset() -> None:
    cheap, production = hasher(password_hash_preset="test"), hasher()
    cheap_hash, production_hash = await cheap.hash(PW), await production.hash(PW)
    assert production.needs_rehash(cheap_hash)  # a test database taken to production heals
    assert not production.needs_rehash(production_hash)
    assert not cheap.needs_rehash(cheap_hash)
    assert not cheap.needs_rehash(production_hash)  # no downgrade
    argon2i = argon2.PasswordHasher(type=argon2.Type.I, memory_cost=19456).hash(PW)
    for checker in (cheap, production):
        assert checker.needs_rehash("not a hash")
        assert checker.needs_rehash(argon2i)
