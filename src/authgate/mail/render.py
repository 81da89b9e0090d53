"""Mail bodies from Jinja2 templates: ``<name>.subject.txt``, ``<name>.txt`` and
``<name>.html`` under the package's ``mail/templates``; a file of the same name in
``MAIL_TEMPLATES_DIR`` overrides the package's."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jinja2

#: The templates and what each is for (the context each gets is in core/account.py).
TEMPLATES = {
    "verify": "confirm the address of a new account (a link with a token)",
    "change": "confirm a new address (a link with a token)",
    "change_notice": "tell the old address that a change was asked for (no token)",
    "reset": "reset a forgotten password (a link with a token)",
    "factor_notice": "a sign-in method (authenticator app, passkey) was added or removed",
    "test": "authgate mail test",
}


class Renderer:
    """Jinja2 is imported on first use (the engine imports no web-page machinery)."""

    def __init__(self, override_dir: Path | None = None) -> None:
        self.override_dir = override_dir
        self._envs: tuple[jinja2.Environment, jinja2.Environment] | None = None

    def _environments(self) -> tuple[jinja2.Environment, jinja2.Environment]:
        if self._envs is None:
            import jinja2

            loaders: list[jinja2.BaseLoader] = []
            if self.override_dir is not None:
                loaders.append(jinja2.FileSystemLoader(str(self.override_dir)))
            loaders.append(jinja2.PackageLoader("authgate.mail", "templates"))
            loader = jinja2.ChoiceLoader(loaders)
            text = jinja2.Environment(loader=loader, autoescape=False,  # noqa: S701 (plain text)
                                      keep_trailing_newline=True,
                                      undefined=jinja2.StrictUndefined)
            html = jinja2.Environment(loader=loader, autoescape=True,
                                      undefined=jinja2.StrictUndefined)
            self._envs = (text, html)
        return self._envs

    def message(self, template: str, context: dict[str, Any], *, to: str,
                sender: str) -> EmailMessage:
        """The mail (plain text and HTML alternatives) of ``template`` for ``context``."""
        text, html = self._environments()
        subject = text.get_template(f"{template}.subject.txt").render(context)
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = to
        msg["Subject"] = " ".join(subject.split())
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        domain = sender.rpartition("@")[2].strip(" >") or "localhost"
        msg["Message-ID"] = make_msgid(domain=domain)
        msg.set_content(text.get_template(f"{template}.txt").render(context))
        msg.add_alternative(html.get_template(f"{template}.html").render(context),
                            subtype="html")
        return msg
