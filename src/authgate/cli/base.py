"""What every command shares: settings, the engine for one job, one-line failures."""

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
    server (every worker) and the CLI's one-shot engine read it here and inject the clock."""
    import os

    path = os.environ.get(TEST_CLOCK_FILE)
    return OffsetFileClock(Path(path)) if path else None


def _run(config: str | None, job: Callable[[Any], Awaitable[T]]) -> T:
    """Open the engine (migrating the database), run ``job(engine)``, close it."""
    from authgate.engine import Engine

    settings = _settings(config)

    async def main() -> T:
        engine = Engine(settings, clock=test_clock())
        try:
            await engine.db.migrate()
            await engine.keys.load(engine.clock.now())
            return await job(engine)
        finally:
            await engine.events.flush()  # what the command did goes into the audit trail
            await engine.db.close()

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
