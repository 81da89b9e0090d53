"""authgate: hybrid session + token authentication for Python backends.

The engine (``authgate.engine``) imports no web framework; ``AuthGateMiddleware`` is loaded
on first use so ``import authgate`` stays framework-free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from authgate.errors import AuthGateError
from authgate.gate import AuthGate
from authgate.models import Principal, User
from authgate.settings import Settings

if TYPE_CHECKING:
    from authgate.middleware import AuthGateMiddleware

__all__ = ["AuthGate", "AuthGateError", "AuthGateMiddleware", "Principal", "Settings", "User"]


def __getattr__(name: str) -> Any:
    if name == "AuthGateMiddleware":
        from authgate.middleware import AuthGateMiddleware

        return AuthGateMiddleware
    raise AttributeError(f"module 'authgate' has no attribute {name!r}")
