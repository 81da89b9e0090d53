"""Settings: one flat AUTHGATE_* / TOML surface, grouped read-only views for the code, the test
preset for password hashes and the test clock that is not a setting."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from authgate.clock import OffsetFileClock
from authgate.errors import ConfigError
from authgate.setting_groups import GROUPS
from authgate.settings import Settings, load_settings, unknown_environment


@pytest.fixture(autouse=True)
def _no_authgate_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("AUTHGATE_"):
            monkeypatch.delenv(name)


def test_every_setting_is_in_exactly_one_group() -> None:
    seen: dict[str, str] = {}
    derived = {"token_issuer", "public_origin", "session_cookie", "access_cookie",
               "refresh_cookie", "device_cookie"}
    for group, cls in GROUPS.items():
        for name in cls.SOURCE.values():
            assert name not in seen, f"{name} is in {seen[name]} and {group}"
            seen[name] = group
        assert set(cls.SOURCE) == {f.name for f in dataclasses.fields(cls)}
    # tokens.issuer is the effective ISSUER (PUBLIC_URL when unset): it views both.
    assert set(seen) - derived | {"issuer"} == set(Settings.model_fields)


def test_the_flat_environment_names_fill_the_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_SESSION_IDLE_TTL", "600")
    monkeypatch.setenv("AUTHGATE_ACCESS_TOKEN_TTL", "120")
    monkeypatch.setenv("AUTHGATE_ARGON2_MEMORY_KIB", "65536")
    monkeypatch.setenv("AUTHGATE_DATABASE_URL", "sqlite:///x.db")
    monkeypatch.setenv("AUTHGATE_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")
    monkeypatch.setenv("AUTHGATE_ROLE_SCOPES", "admin=reports:read reports:write")
    s = load_settings()
    assert s.sessions.idle_ttl == s.session_idle_ttl == 600
    assert s.tokens.access_ttl == 120
    assert s.passwords.argon2_memory_kib == 65536
    assert s.storage.database_url == "sqlite:///x.db"
    assert s.server.trusted_proxies == ("10.0.0.0/8", "127.0.0.1")
    assert s.tokens.scopes_for(["admin", "viewer"]) == s.scopes_for(["admin", "viewer"]) == [
        "reports:read", "reports:write", "viewer"]
    assert s.tokens.issuer == s.server.public_url == "http://127.0.0.1:8000"
    assert s.cookies.session == "__Host-authgate"


def test_the_toml_keys_fill_the_groups(tmp_path: Path) -> None:
    config = tmp_path / "authgate.toml"
    config.write_text('[authgate]\nSESSION_IDLE_TTL = 300\nredis_url = "redis://r:6379/0"\n'
                      "cookie_secure = false\n")
    s = load_settings(config)
    assert (s.sessions.idle_ttl, s.storage.redis_url) == (300, "redis://r:6379/0")
    assert (s.cookies.secure, s.cookies.session, s.cookies.refresh) == (
        False, "authgate", "authgate-rt")


def test_groups_are_read_only_and_built_once() -> None:
    s = Settings(allowed_origins="https://a.example", role_scopes="admin=x")
    assert s.sessions is s.sessions and s.tokens is s.tokens
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.sessions.idle_ttl = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.tokens.role_scopes["admin"] = ("y",)  # type: ignore[index]
    assert s.server.allowed_origins == ("https://a.example",)
    copied = s.model_copy(update={"session_idle_ttl": 60})
    assert copied.sessions.idle_ttl == 60 and s.sessions.idle_ttl == 1800


def test_the_clock_is_not_a_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="test_clock_file"):
        Settings(test_clock_file=str(tmp_path / "clock"))  # type: ignore[call-arg]
    monkeypatch.setenv("AUTHGATE_TEST_CLOCK_FILE", str(tmp_path / "clock"))
    monkeypatch.setenv("AUTHGATE_SESION_IDLE_TTL", "60")
    assert unknown_environment() == [
        "unknown setting AUTHGATE_SESION_IDLE_TTL is ignored "
        "(did you mean AUTHGATE_SESSION_IDLE_TTL?)"]


def test_the_cli_injects_the_test_clock(monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    from authgate.cli.base import test_clock

    assert test_clock() is None
    clock_file = tmp_path / "clock"
    clock_file.write_text("3600")
    monkeypatch.setenv("AUTHGATE_TEST_CLOCK_FILE", str(clock_file))
    clock = test_clock()
    assert isinstance(clock, OffsetFileClock)
    assert 3590 < clock.now() - time.time() < 3610


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:9000",
                                 "http://[::1]:8000", "http://127.0.0.2"])
def test_the_test_preset_on_a_loopback_public_url(url: str) -> None:
    s = Settings(public_url=url, password_hash_preset="test")
    assert s.passwords.hash_preset == "test"
    assert Settings().passwords.hash_preset == "default"


@pytest.mark.parametrize("url", ["https://auth.example.com", "http://10.0.0.5:8000",
                                 "http://localhost.example.com"])
def test_the_test_preset_is_refused_anywhere_else(monkeypatch: pytest.MonkeyPatch,
                                                  url: str) -> None:
    monkeypatch.setenv("AUTHGATE_PUBLIC_URL", url)
    monkeypatch.setenv("AUTHGATE_PASSWORD_HASH_PRESET", "test")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.detail.startswith("bad setting AUTHGATE_PASSWORD_HASH_PRESET: ")
    assert "loopback PUBLIC_URL" in info.value.detail and "\n" not in info.value.detail


def test_the_test_preset_and_explicit_argon2_parameters_exclude_each_other(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_PASSWORD_HASH_PRESET", "test")
    monkeypatch.setenv("AUTHGATE_ARGON2_TIME_COST", "3")
    with pytest.raises(ConfigError, match="replaces argon2_time_cost"):
        load_settings()
    with pytest.raises(ValueError, match="greater than or equal to 19456"):
        Settings(argon2_memory_kib=8)  # the minimums stay for the explicit parameters


def test_serve_refuses_the_test_preset_on_a_public_listener(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from authgate.cli import main

    monkeypatch.setenv("AUTHGATE_PASSWORD_HASH_PRESET", "test")
    monkeypatch.setenv("AUTHGATE_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    done = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--port", "0"])
    assert done.exit_code == 2
    assert done.output.strip().splitlines() == [
        "authgate: error: PASSWORD_HASH_PRESET=test is for tests: serve it on a loopback "
        "address, not 0.0.0.0"]


def test_the_cache_sizes_reach_the_caches(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    """CACHE_SIZE and TOKEN_CACHE_MB size the in-process caches (bench/coldset.py: a cold
    set larger than the default token cache re-verifies two tokens in three)."""
    from authgate import AuthGate
    from authgate.hotstate import HotState

    monkeypatch.setenv("AUTHGATE_DATABASE_URL", f"sqlite:///{tmp_path / 'a.db'}")
    monkeypatch.setenv("AUTHGATE_CACHE_SIZE", "5000")
    monkeypatch.setenv("AUTHGATE_TOKEN_CACHE_MB", "256")
    hot: HotState = AuthGate(load_settings(None)).engine.hot
    assert hot.sessions.capacity == hot.verified.capacity == 5000
    assert hot.verified.max_bytes == 256 * 1024 * 1024
    monkeypatch.setenv("AUTHGATE_CACHE_SIZE", "10")
    with pytest.raises(ConfigError):
        load_settings(None)
