"""Mail: the SMTP transport (or the log), the templates, and the background sender that
delivers the mail outbox. The account lifecycle that writes the mails is
:mod:`authgate.core.account`."""

from authgate.mail.sender import MailSender
from authgate.mail.transport import LogTransport, SmtpTransport, Transport, parse_smtp_url

__all__ = ["LogTransport", "MailSender", "SmtpTransport", "Transport", "parse_smtp_url"]
