"""A real SMTP server for the tests: ``aiosmtpd`` on a free loopback port (in a thread),
collecting what it receives; optionally STARTTLS (required) or implicit TLS with a
self-signed certificate made by ``cryptography``, and optionally SMTP AUTH."""

from __future__ import annotations

import datetime
import email
import email.policy
import ipaddress
import re
import ssl
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.conftest import free_port


@dataclass
class Received:
    to: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None
        return str(part.get_content())  # type: ignore[attr-defined]

    @property
    def html(self) -> str:
        part = self.message.get_body(("html",))
        assert part is not None
        return str(part.get_content())  # type: ignore[attr-defined]

    def link(self, page: str) -> str:
        found = re.search(r"(https?://\S+/" + re.escape(page) + r"\?token=[A-Za-z0-9_-]+)",
                          self.text)
        assert found, self.text
        return found.group(1)

    def token(self, page: str) -> str:
        return parse_qs(urlsplit(self.link(page)).query)["token"][0]


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.box.lock:
            self.box.received.append(Received(list(envelope.rcpt_tos), msg))  # type: ignore[arg-type]
        return "250 OK"


def self_signed(dirpath: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost: (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = dirpath / "smtp-cert.pem", dirpath / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class Mailbox:
    """The SMTP server and what it received. ``tls``: None, ``"starttls"`` (required) or
    ``"implicit"``; ``login``: (user, password) required via AUTH."""

    def __init__(self, certs: tuple[Path, Path] | None = None, tls: str | None = None,
                 login: tuple[str, str] | None = None) -> None:
        self.port = free_port()
        self.received: list[Received] = []
        self.logins: list[str] = []
        self.lock = threading.Lock()
        self.tls = tls
        self.certs = certs
        self.login = login
        self.controller: Controller | None = None

    @property
    def url(self) -> str:
        scheme = "smtps" if self.tls == "implicit" else "smtp"
        auth = f"{self.login[0]}:{self.login[1]}@" if self.login else ""
        query = "?starttls=true" if self.tls == "starttls" else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}{query}"

    def _context(self) -> ssl.SSLContext:
        assert self.certs is not None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.certs[0]), str(self.certs[1]))
        return ctx

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and self.login is not None
              and (auth_data.login.decode(), auth_data.password.decode()) == self.login)
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok)

    def start(self) -> Mailbox:
        kwargs: dict[str, Any] = {}
        if self.tls == "starttls":
            kwargs.update(tls_context=self._context(), require_starttls=True)
        elif self.tls == "implicit":
            kwargs.update(ssl_context=self._context())
        if self.login is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True)
            if self.tls == "implicit":
                # aiosmtpd knows TLS only from STARTTLS (and warns when AUTH is required
                # without it): the socket is TLS from the start, AUTH is offered, and
                # ``logins`` shows that the client used it.
                kwargs.update(auth_require_tls=False, auth_required=False)
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                     **kwargs)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def to(self, address: str) -> list[Received]:
        with self.lock:
            return [m for m in self.received if address.lower() in
                    (a.lower() for a in m.to)]

    def wait(self, address: str, count: int = 1, within: float = 10.0) -> list[Received]:
        """The first ``count`` mails to ``address``, waiting for them up to ``within`` s."""
        deadline = time.monotonic() + within
        while True:
            found = self.to(address)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(found)} of {count} mail(s) to {address} arrived; "
                                     f"all: {[m.to for m in self.received]}")
            time.sleep(0.05)
