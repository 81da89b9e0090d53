"""The mail and account-lifecycle settings (mixed into :class:`authgate.settings.Settings`;
their group view is :class:`authgate.setting_groups.MailSettings`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator


class MailFields(BaseModel):
    # smtp://[user:pass@]host:port[?starttls=true] | smtps://...; unset: mails go to the log.
    smtp_url: SecretStr | None = None
    mail_from: str = "authgate <authgate@localhost>"
    mail_templates_dir: Path | None = None  # overrides the package's mail templates
    reset_token_ttl: int = Field(default=1800, ge=60, le=24 * 3600)
    verify_token_ttl: int = Field(default=86400, ge=60, le=30 * 86400)
    require_verified_email: bool = False
    mail_limit: int = Field(default=5, ge=1)  # mails per account (and per address) ...
    mail_window: int = Field(default=3600, ge=60)  # ... per this many seconds

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from authgate.mail.transport import parse_smtp_url

            parse_smtp_url(value.get_secret_value())
        return value

    @field_validator("mail_from")
    @classmethod
    def _mail_from(cls, value: str) -> str:
        from email.utils import parseaddr

        if "@" not in parseaddr(value)[1] or any(c in value for c in "\r\n"):
            raise ValueError("must be an address such as 'authgate <noreply@example.com>'")
        return value

    @field_validator("mail_templates_dir")
    @classmethod
    def _templates_dir(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not a directory")
        return value
