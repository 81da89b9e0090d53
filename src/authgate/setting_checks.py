"""Value parsers and checks that more than one settings module uses: comma-separated lists
and origin lists (``ALLOWED_ORIGINS`` in :mod:`authgate.settings`, ``WEBAUTHN_ORIGINS`` in
:mod:`authgate.setting_webauthn`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


def split_csv(value: Any) -> Any:
    """``"a, b,,c"`` as ``["a", "b", "c"]``; anything else (a TOML or JSON list) as is."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def check_origins(value: list[str]) -> list[str]:
    """Each entry an origin: ``http(s)://host[:port]``, no path."""
    for origin in value:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise ValueError(f"{origin!r} is not an origin such as https://app.example.com")
    return [o.rstrip("/") for o in value]
