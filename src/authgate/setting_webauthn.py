"""The passkey (WebAuthn) settings: the relying party and the origins a ceremony may come
from (mixed into :class:`authgate.settings.Settings`; their group view is
:class:`authgate.setting_groups.ServerSettings`, read by :mod:`authgate.core.passkeys`)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import NoDecode

from authgate.setting_checks import check_origins, split_csv


class WebauthnFields(BaseModel):
    # Passkeys (WebAuthn): the RP ID and the origins assertions may come from; unset, both
    # follow PUBLIC_URL (its host; its origin).
    webauthn_rp_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]{1,253}$")
    webauthn_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Named apart from Settings' own validators (a subclass's method of the same name
    # would replace these).
    @field_validator("webauthn_origins", mode="before")
    @classmethod
    def _webauthn_csv(cls, value: Any) -> Any:
        return split_csv(value)

    @field_validator("webauthn_origins")
    @classmethod
    def _webauthn_origins(cls, value: list[str]) -> list[str]:
        return check_origins(value)
