"""Logging: one line per event, as text for a terminal or JSON for a collector, every line
of a request carrying its request id.

``LOG_FORMAT=json`` writes one JSON object per line: ``timestamp`` (ISO 8601 UTC),
``level``, ``logger``, ``message``, ``request_id`` and the event's own fields (``event``,
``user_id``, ``ip``, ``reason``, ...). Nothing secret is ever passed to a logger: the
callers log ids, hashes and reasons, never a cookie, token, password or mail token.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

#: The id of the request being handled (``-`` outside a request).
request_id: ContextVar[str] = ContextVar("authgate_request_id", default="-")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# What every LogRecord has; anything else on a record is an event field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "request_id", "taskName"}


def new_request_id(offered: str | None = None) -> str:
    """``offered`` (an ``X-Request-ID`` from a trusted proxy) when it is a plain token,
    else a fresh random id."""
    if offered and _SAFE_ID.match(offered):
        return offered
    return fresh_request_id()


# Request ids: an id, not a secret, so an in-process generator spares every request a
# ``getrandom`` system call. A private one: the global ``random`` is the app's (a
# ``random.seed(0)`` there, or a test framework's, must not make ids repeat); reseeded in a
# forked child so workers never share a sequence.
_ids = random.Random()  # noqa: S311 (an id, not a secret: see above)
os.register_at_fork(after_in_child=_ids.seed)


def fresh_request_id() -> str:
    """16 hex digits, 64 random bits."""
    return f"{_ids.getrandbits(64):016x}"


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


def event_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller passed with ``extra=``."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", request_id.get()),
        }
        entry.update(event_fields(record))
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__  # never the traceback's values
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger [request id] message key=value ...``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        line = super().format(record)
        fields = event_fields(record)
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return line


def configure(fmt: str = "text", level: int = logging.INFO) -> None:
    """Send authgate's (and uvicorn's) log lines to stderr in ``fmt`` (``text`` or
    ``json``). Idempotent: a second call replaces the handler it installed."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    handler.set_name("authgate")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "authgate"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # webhook posts: ours say enough
    for name in ("uvicorn", "uvicorn.error"):  # one format for everything on stderr
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
