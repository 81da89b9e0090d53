"""The passkey (WebAuthn) settings: the relying party and the origins a ceremony may come
from (mixed into :class:`authgate.settings.Settings`; their group view is
:class:`authgate.setting_groups.ServerSettings`, read by :mod:`authgate.core.passkeys`).

``WEBAUTHN_ORIGINS`` is split on commas and checked as origins by the validators
``Settings`` shares with ``ALLOWED_ORIGINS``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field
from pydantic_settings import NoDecode


class WebauthnFields(BaseModel):
    # Passkeys (WebAuthn): the RP ID and the origins assertions may come from; unset, both
    # follow PUBLIC_URL (its host; its origin).
    webauthn_rp_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]{1,253}$")
    webauthn_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
