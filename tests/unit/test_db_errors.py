"""Which driver errors mean "the database is unavailable" (503, retry) rather than "this
statement failed" (a bug to surface)."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError

from authgate.store.db import _is_connectivity


def _wrapped(driver_error: Exception) -> DBAPIError:
    """As SQLAlchemy's asyncpg adapter raises it: its own error, caused by asyncpg's."""
    adapted = Exception(str(driver_error))
    adapted.__cause__ = driver_error
    return DBAPIError("SELECT 1", None, adapted)


@pytest.mark.parametrize("driver_error", [
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.exceptions.ConnectionDoesNotExistError("connection does not exist"),
], ids=["starting-up", "admin-shutdown", "connection-gone"])
def test_a_restarting_postgresql_is_unavailable(driver_error: Exception) -> None:
    # A restarting PostgreSQL answers 57P03 for a few seconds: the mail sender's claim hit
    # it in tests/scaleout/test_faults.py and logged a traceback instead of waiting.
    assert _is_connectivity(_wrapped(driver_error))


def test_a_failing_statement_is_not_unavailable() -> None:
    unique = asyncpg.exceptions.UniqueViolationError("duplicate key value")
    assert not _is_connectivity(_wrapped(unique))
    assert not _is_connectivity(IntegrityError("INSERT", None, Exception("duplicate")))
