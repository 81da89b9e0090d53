"""The public names of contract section 6 exist and are documented."""

from __future__ import annotations

import inspect
from pathlib import Path

import authgate


def test_contract_names_are_exported() -> None:
    for name in ("AuthGate", "Settings", "AuthGateMiddleware"):
        assert name in authgate.__all__ and getattr(authgate, name) is not None


def test_every_public_name_has_a_docstring() -> None:
    missing = []
    for name in authgate.__all__:
        obj = getattr(authgate, name)
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                if attr.startswith("_") or attr.startswith("model_"):
                    continue
                documented = bool(inspect.getdoc(value))
                if (inspect.isfunction(value) or isinstance(value, property)) and not documented:
                    missing.append(f"{name}.{attr}")
    assert missing == []


def test_registered_claims_are_refused_at_start_up(tmp_path: Path) -> None:
    import asyncio

    import pytest

    from authgate.errors import ConfigError

    gate = authgate.AuthGate(authgate.Settings(database_url=f"sqlite:///{tmp_path}/c.db"),
                             extra_claims=lambda user: {"sub": "someone-else"})

    async def start() -> None:
        async with gate.lifespan():
            pass

    with pytest.raises(ConfigError, match="sub"):
        asyncio.run(start())


def test_a_script_uses_the_gate_as_an_async_context(tmp_path: Path) -> None:
    """One root: ``async with AuthGate(settings) as gate`` starts everything a script needs
    and the services are reached through it, not through the engine's internals."""
    import asyncio

    async def script() -> tuple[bool, bool, bool]:
        settings = authgate.Settings(database_url=f"sqlite:///{tmp_path}/script.db")
        async with authgate.AuthGate(settings) as gate:
            user = await gate.users.create_user("scripted-sam", "a long enough passphrase 7")
            value, _, _ = await gate.sessions.login("scripted-sam", "a long enough passphrase 7")
            signed_in = await gate.sessions.session_principal(value) is not None
            pair = await gate.grants.password_grant("scripted-sam",
                                                    "a long enough passphrase 7")
            token_ok = (await gate.grants.token_principal(pair.access_token)).user.id == user.id
            await gate.sessions.logout_everywhere(user)
            ended = await gate.sessions.session_principal(value) is None
        return signed_in, token_ok, ended

    assert asyncio.run(script()) == (True, True, True)
