"""Mail delivery: an SMTP outage delays mail and never loses it; STARTTLS, implicit TLS and
SMTP AUTH against a real server (aiosmtpd) with a self-signed certificate; two instances on
one PostgreSQL database send each mail once; the log without SMTP_URL; operator templates;
the outbox metric and CLI (``mail pending``, ``mail test``, ``users create --email``)."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.blackbox.support import eventually, new_password, one_line_error
from tests.blackbox.test_upgrade import PASSWORD, old_rows
from tests.conftest import ROOT, Server
from tests.mailbox import Mailbox, self_signed


def address() -> str:
    return f"d{uuid.uuid4().hex[:10]}@example.com"


def register(srv: Server, email: str) -> tuple[str, str]:
    name, password = f"d-{uuid.uuid4().hex[:10]}", new_password()
    r = httpx.post(f"{srv.url}/auth/register", timeout=30,
                   json={"username": name, "password": password, "email": email})
    assert r.status_code == 201, r.text
    return name, password


def pending(srv: Server) -> list[str]:
    done = srv.cli("mail", "pending")
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line.strip()]


@pytest.fixture
def certs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A self-signed certificate, trusted by the servers started after this (their system
    trust store is SSL_CERT_FILE, as an operator with a private CA would set it)."""
    pair = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(pair[0]))
    return pair


@pytest.fixture
def boxes() -> Iterator[list[Mailbox]]:
    started: list[Mailbox] = []
    yield started
    for box in started:
        box.stop()


def test_an_smtp_outage_delays_mail_and_loses_none(make_server: Any,
                                                   boxes: list[Mailbox]) -> None:
    box = Mailbox()
    boxes.append(box)
    srv = make_server(smtp_url=box.url)  # the SMTP server is not up yet
    email = address()
    register(srv, email)
    assert httpx.post(f"{srv.url}/auth/password/forgot", json={"email": email}).status_code == 202
    assert eventually(lambda: len(pending(srv)) == 2
                      and all("attempts 0" not in line for line in pending(srv)), within=5)
    rows = pending(srv)
    assert "ConnectionRefused" in rows[0] or "SMTP" in rows[0], rows
    assert "?token=" not in "\n".join(rows)
    box.start()
    mails = box.wait(email, 2, within=20)  # the first retry comes after ~5 s
    assert {m.subject.split()[0] for m in mails} == {"Confirm", "Reset"}
    token = next(m for m in mails if "Reset" in m.subject).token("reset-password")
    r = httpx.post(f"{srv.url}/auth/password/reset",
                   json={"token": token, "new_password": new_password()})
    assert r.status_code == 204, r.text
    assert eventually(lambda: pending(srv) == [], within=5)
    # Delivered: the sealed token is gone from the outbox too.
    rows = sqlite3.connect(srv.db_path).execute("SELECT secret FROM mail_outbox").fetchall()
    assert rows and all(secret is None for (secret,) in rows)


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_tls_and_auth(make_server: Any, boxes: list[Mailbox], certs: tuple[Path, Path],
                      tls: str) -> None:
    box = Mailbox(certs, tls=tls, login=("mailer", "s3cret pass")).start()
    boxes.append(box)
    srv = make_server(smtp_url=box.url)
    email = address()
    register(srv, email)
    assert box.wait(email)[0].token("verify-email")
    assert box.logins and set(box.logins) == {"mailer"}
    done = srv.cli("mail", "test", "ops@example.com")
    assert done.returncode == 0, done.stderr
    assert box.wait("ops@example.com")[0].subject.startswith("authgate test mail")


def test_starttls_refused_when_the_certificate_is_not_trusted(
        make_server: Any, boxes: list[Mailbox], tmp_path: Path) -> None:
    box = Mailbox(self_signed(tmp_path), tls="starttls").start()  # SSL_CERT_FILE not set
    boxes.append(box)
    srv = make_server(smtp_url=box.url)
    done = srv.cli("mail", "test", "ops@example.com")
    assert done.returncode == 1
    one_line_error(done.stderr)
    assert "not sent" in done.stderr
    email = address()
    register(srv, email)
    time.sleep(1.5)
    assert box.received == [] and len(pending(srv)) == 1  # kept, not lost


def test_plain_smtp_url_to_a_server_that_requires_starttls_fails_cleanly(
        make_server: Any, boxes: list[Mailbox], certs: tuple[Path, Path]) -> None:
    box = Mailbox(certs, tls="starttls").start()
    boxes.append(box)
    srv = make_server(smtp_url=box.url.replace("?starttls=true", ""))
    done = srv.cli("mail", "test", "ops@example.com")
    assert done.returncode == 1 and "not sent" in done.stderr, done.stderr


def test_two_instances_on_one_postgresql_send_each_mail_once(
        make_server: Any, boxes: list[Mailbox], pg_url: str) -> None:
    box = Mailbox()
    boxes.append(box)
    a = make_server(smtp_url=box.url, database_url=pg_url)
    b = make_server(smtp_url=box.url, database_url=pg_url)
    emails = [address() for _ in range(12)]
    for i, email in enumerate(emails):  # queued while the SMTP server is down ...
        register(a if i % 2 else b, email)
    time.sleep(1.0)
    box.start()  # ... so both senders race for the same due rows
    for email in emails:
        box.wait(email, within=20)
    time.sleep(2.5)  # time for any duplicate to show up
    counts = Counter(to for m in box.received for to in m.to)
    assert sorted(counts) == sorted(emails) and set(counts.values()) == {1}, counts
    assert pending(a) == []


def test_without_smtp_url_mails_go_to_the_log(make_server: Any) -> None:
    srv = make_server()
    email = address()
    register(srv, email)
    assert eventually(lambda: "verify-email?token=" in srv.log(), within=5)
    assert email in srv.log()
    done = srv.cli("mail", "test", "ops@example.com")
    assert done.returncode == 0 and "log" in done.stdout, done


def test_operator_templates_override_the_packaged_ones(make_server: Any,
                                                       boxes: list[Mailbox],
                                                       tmp_path: Path) -> None:
    box = Mailbox().start()
    boxes.append(box)
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "verify.subject.txt").write_text("Welcome to Example, {{ username }}\n")
    (templates / "verify.txt").write_text("Click: {{ link }}\n")
    srv = make_server(smtp_url=box.url, mail_templates_dir=str(templates))
    email = address()
    name, _ = register(srv, email)
    mail = box.wait(email)[0]
    assert mail.subject == f"Welcome to Example, {name}"
    assert mail.text.startswith("Click: ") and mail.token("verify-email")
    assert "Confirm my address" in mail.html  # the packaged HTML stays


def test_bad_mail_settings_are_one_line(make_server: Any, tmp_path: Path) -> None:
    srv = Server(tmp_path, {"smtp_url": "http://mail.example.com"})
    done = srv.cli("serve", "--port", "1")
    assert done.returncode == 2
    one_line_error(done.stderr)
    assert "SMTP_URL" in done.stderr
    srv = Server(tmp_path, {"mail_templates_dir": str(tmp_path / "missing")})
    done = srv.cli("mail", "pending")
    assert done.returncode == 2
    one_line_error(done.stderr)


def test_outbox_depth_metric(make_server: Any, boxes: list[Mailbox]) -> None:
    box = Mailbox()
    boxes.append(box)
    srv = make_server(smtp_url=box.url)
    register(srv, address())
    register(srv, address())

    def depth() -> float:
        text = httpx.get(f"{srv.url}/metrics").text
        line = next(x for x in text.splitlines()
                    if x.startswith('authgate_outbox_pending{outbox="mail"}'))
        return float(line.split()[-1])

    assert depth() == 2.0
    box.start()
    assert eventually(lambda: depth() == 0.0, within=20)


def test_cli_users_with_email(make_server: Any) -> None:
    srv = make_server()
    name, password = f"c-{uuid.uuid4().hex[:8]}", new_password()
    done = srv.cli("users", "create", name, "--password-stdin", "--email", "Op@Example.com",
                   input=password + "\n")
    assert done.returncode == 0, done.stderr
    listing = srv.cli("users", "list").stdout
    assert any(line.startswith(name) and "Op@example.com (unverified)" in line
               for line in listing.splitlines()), listing
    users = json.loads(srv.cli("users", "list", "--json").stdout)
    me = next(u for u in users if u["username"] == name)
    assert me["email"] == "Op@example.com" and me["email_verified"] is False
    with srv.client() as c:
        assert c.login("op@EXAMPLE.com", password).status_code == 200
    done = srv.cli("users", "create", f"x-{uuid.uuid4().hex[:8]}", "--password-stdin",
                   "--email", "OP@example.com", input=password + "\n")
    assert done.returncode == 1
    one_line_error(done.stderr)
    done = srv.cli("users", "create", f"x-{uuid.uuid4().hex[:8]}", "--password-stdin",
                   "--email", "not an address", input=password + "\n")
    assert done.returncode == 1
    one_line_error(done.stderr)
    vouched = f"v-{uuid.uuid4().hex[:8]}"
    done = srv.cli("users", "create", vouched, "--password-stdin", "--email",
                   "vouched@example.com", "--email-verified", input=password + "\n")
    assert done.returncode == 0, done.stderr
    assert "vouched@example.com (verified)" in srv.cli("users", "list").stdout


def test_a_database_of_the_previous_release_gets_addresses(tmp_path: Path,
                                                           boxes: list[Mailbox]) -> None:
    box = Mailbox().start()
    boxes.append(box)
    rows, _ = old_rows()
    conn = sqlite3.connect(tmp_path / "authgate.db")
    conn.executescript((ROOT / "tests/data/schema-0.1.0-sqlite.sql").read_text())
    for row in rows:
        conn.execute(row.replace("false", "0"))
    conn.commit()
    conn.close()
    srv = Server(tmp_path, {"smtp_url": box.url})
    assert "6\tusers.email" in srv.cli("migrate", "--dry-run").stdout
    srv.start()
    try:
        c = srv.client()
        assert c.login("olduser", PASSWORD).status_code == 200
        assert c.get("/auth/me").json()["email"] is None
        r = c.unsafe("PUT", "/auth/email", json={"email": "old@example.com",
                                                 "current_password": PASSWORD})
        assert r.status_code == 202, r.text
        token = box.wait("old@example.com")[0].token("verify-email")
        r = httpx.post(f"{srv.url}/auth/email/verify", json={"token": token})
        assert r.json()["email"] == "old@example.com" and r.json()["email_verified"]
        c.close()
    finally:
        srv.stop()


def test_other_instances_see_a_verified_address(make_server: Any, boxes: list[Mailbox],
                                                pg_url: str) -> None:
    box = Mailbox().start()
    boxes.append(box)
    a = make_server(smtp_url=box.url, database_url=pg_url)
    b = make_server(smtp_url=box.url, database_url=pg_url)
    email = address()
    name, password = register(a, email)
    c = b.client()
    assert c.login(name, password).status_code == 200
    assert c.get("/auth/me").json()["email_verified"] is False  # cached on b now
    token = box.wait(email)[0].token("verify-email")
    assert httpx.post(f"{a.url}/auth/email/verify", json={"token": token}).status_code == 200
    assert eventually(lambda: c.get("/auth/me").json()["email_verified"] is True, within=1.0)
    c.close()
