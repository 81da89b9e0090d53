"""What every command shares: settings, a started gate for one job, one-line failures."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from authgate.clock import Clock, OffsetFileClock
from authgate.errors import AuthGateError, ConfigError
from authgate.models import User
from authgate.settings import TEST_CLOCK_FILE, Settings, load_settings

T = TypeVar("T")


def fail(message: str, code: int = 1) -> None:
    click.echo(f"authgate: error: {message}", err=True)
    sys.exit(code)


def _settings(config: str | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        fail(exc.detail, 2)
        raise


def test_clock() -> Clock | None:
    """TEST-ONLY: the test harness's moved clock, when ``AUTHGATE_TEST_CLOCK_FILE`` names an
    offset file (see :class:`OffsetFileClock`), else None (the real time). Deliberately not a
    setting: no configuration file or ``Settings(...)`` can move a deployment's time; the
    server (every worker) and the CLI's one-shot gate read it here and inject the clock."""
    import os

    path = os.environ.get(TEST_CLOCK_FILE)
    return OffsetFileClock(Path(path)) if path else None


async def user_named(gate: Any, username: str) -> User:
    """The user called ``username``, or the one-line error every command gives."""
    user: User | None = await gate.users.user_by_name(username)
    if user is None:
        raise AuthGateError(f"no user named {username!r}")
    return user


def _run(config: str | None, job: Callable[[Any], Awaitable[T]], *,
         redis_required: bool = False) -> T:
    """Run ``job(gate)`` on a started :class:`~authgate.AuthGate` (the database migrated,
    keys loaded, revocations published to the running servers), then stop it. The gate is
    what every command uses: its public services only. A command works through a Redis
    outage (``redis_required``: ``serve``'s check does not)."""
    from authgate.gate import AuthGate

    settings = _settings(config)

    async def main() -> T:
        gate = AuthGate(settings, clock=test_clock())
        await gate.start(redis_required=redis_required)
        try:
            return await job(gate)
        finally:
            await gate.stop()

    try:
        return asyncio.run(main())
    except AuthGateError as exc:
        fail(exc.detail)
    except (OSError, ImportError) as exc:
        fail(f"cannot reach the database: {exc}")
    except Exception as exc:  # a driver error we did not foresee: still one line
        fail(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    raise AssertionError("unreachable")


config_option = click.option("--config", "config", type=click.Path(dir_okay=False),
                             default=None, envvar="AUTHGATE_CONFIG",
                             help="TOML file of settings (keys as the AUTHGATE_ variables).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """authgate: hybrid session + token authentication."""


def _redact(url: str) -> str:
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
