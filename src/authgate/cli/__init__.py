"""``authgate``: serve, manage users, keys and sessions. Every failure is one clear line on
stderr and a non-zero exit, never a traceback. One module per command group."""

from authgate.cli import api_keys, data, mail, ops, serve, users  # noqa: F401  (each registers its commands)
from authgate.cli.base import main

__all__ = ["main"]
