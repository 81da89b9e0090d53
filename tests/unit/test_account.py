"""The account lifecycle in process, on every record backend: the outbox lease, sealed
tokens, single use under concurrency, expiry by the injected clock; the SMTP URL parser and
the templates."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from authgate.clock import ManualClock
from authgate.core.account import clean_email, mask
from authgate.core.credentials import Sealer
from authgate.engine import Engine
from authgate.errors import InvalidEmail, InvalidMailToken, PolicyError
from authgate.mail.render import Renderer
from authgate.mail.transport import SmtpConfig, parse_smtp_url
from authgate.models import Principal
from tests.unit.conftest import EngineFactory

PASSWORD = "unit test pass phrase"


async def quiet(make_engine: EngineFactory, **settings: Any) -> Engine:
    """An engine whose mail sender is stopped: the test reads the outbox itself."""
    engine = await make_engine(**settings)
    await engine.mailer.stop()
    return engine


async def queued_tokens(engine: Engine) -> list[tuple[str, str, str]]:
    """(to, template, token) of every due mail, claimed and unsealed as the sender would."""
    rows = await engine.mailer.outbox.claim(engine.clock.now(), 30)
    return [(r["to_addr"], r["template"], engine.sealer.open("mail", r["secret"]))
            for r in rows if r["secret"]]


async def test_reset_token_is_single_use_under_concurrency(make_engine: EngineFactory) -> None:
    engine = await quiet(make_engine)
    await engine.account.register("racer", PASSWORD, "racer@example.com")
    await engine.account.forgot("RACER@example.com", "127.0.0.1")
    (token,) = [t for _, name, t in await queued_tokens(engine) if name == "reset"]
    results = await asyncio.gather(
        *(engine.account.reset(token, f"new pass phrase {i} long") for i in range(5)),
        return_exceptions=True)
    assert sum(r is None for r in results) == 1, results
    assert all(isinstance(r, InvalidMailToken) for r in results if r is not None)


async def test_two_senders_claim_disjoint_mails(make_engine: EngineFactory) -> None:
    a, b = await quiet(make_engine), await quiet(make_engine)
    for i in range(10):
        await a.account.register(f"claim{i}", PASSWORD, f"claim{i}@example.com")
    now = a.clock.now()
    first, second = await asyncio.gather(a.mailer.outbox.claim(now, 30, limit=10),
                                         b.mailer.outbox.claim(now, 30, limit=10))
    ids_a, ids_b = {r["id"] for r in first}, {r["id"] for r in second}
    assert not ids_a & ids_b and len(ids_a | ids_b) == 10
    assert await a.mailer.outbox.claim(now, 30) == []  # leased
    assert len(await a.mailer.outbox.claim(now + 31, 30)) == 10  # the lease ran out


async def test_tokens_expire_by_the_clock(make_engine: EngineFactory,
                                          clock: ManualClock) -> None:
    engine = await quiet(make_engine, reset_token_ttl=600)
    await engine.account.register("late", PASSWORD, "late@example.com")
    await engine.account.forgot("late@example.com", "127.0.0.1")
    tokens = {name: t for _, name, t in await queued_tokens(engine)}
    clock.advance(601)
    with pytest.raises(InvalidMailToken):
        await engine.account.reset(tokens["reset"], "a fresh pass phrase")
    assert (await engine.account.verify(tokens["verify"])).email_verified  # 24 h


async def test_the_policy_is_checked_before_the_token_is_spent(
        make_engine: EngineFactory) -> None:
    engine = await quiet(make_engine)
    await engine.account.register("policy", PASSWORD, "policy@example.com")
    await engine.account.forgot("policy@example.com", "127.0.0.1")
    (token,) = [t for _, name, t in await queued_tokens(engine) if name == "reset"]
    with pytest.raises(PolicyError):
        await engine.account.reset(token, "policy")  # too short, and the username
    await engine.account.reset(token, "a long enough pass phrase")


async def test_unknown_addresses_queue_nothing(make_engine: EngineFactory) -> None:
    engine = await quiet(make_engine)
    await engine.account.forgot("nobody@example.com", "127.0.0.1")
    assert await engine.mailer.outbox.depth() == 0


def test_smtp_urls() -> None:
    assert parse_smtp_url("smtp://mail.example.com") == SmtpConfig("mail.example.com", 25)
    assert parse_smtp_url("smtps://u%40x:p%3Aw@mail.example.com") == SmtpConfig(
        "mail.example.com", 465, "u@x", "p:w", implicit_tls=True)
    assert parse_smtp_url("smtp://h:587?starttls=true").starttls
    for bad in ("http://h", "smtp://", "smtp://h:99999", "smtp://h?tls=1",
                "smtps://h?starttls=true", "smtp://h?starttls=maybe"):
        with pytest.raises(ValueError):
            parse_smtp_url(bad)


def test_sealed_tokens() -> None:
    sealer, other = Sealer(), Sealer()
    sealer.key, other.key = b"k" * 32, b"o" * 32
    sealed = sealer.seal("mail", "the token")
    assert "the token" not in sealed and sealer.open("mail", sealed) == "the token"
    for wrong in (lambda: other.open("mail", sealed), lambda: sealer.open("csrf", sealed)):
        with pytest.raises(ValueError):
            wrong()


def test_addresses() -> None:
    assert clean_email("Ann@EXAMPLE.com") == "Ann@example.com"
    assert mask("ann@example.com") == "a***@example.com"
    for bad in ("ann", "ann@localhost", "a@b@example.com", "x" * 400 + "@example.com"):
        with pytest.raises(InvalidEmail):
            clean_email(bad)


def test_templates_escape_html_and_can_be_overridden(tmp_path: Path) -> None:
    ctx = {"username": "<script>x</script>", "email": "a@example.com", "site": "example.com",
           "site_url": "https://example.com", "link": "https://example.com/verify-email?token=t",
           "ttl_hours": 24, "ttl_minutes": 1440}
    msg = Renderer().message("verify", ctx, to="a@example.com", sender="x <x@example.com>")
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert msg["Subject"] == "Confirm your email address for example.com"
    (tmp_path / "verify.subject.txt").write_text("Hi {{ username }}\n")
    msg = Renderer(tmp_path).message("verify", {**ctx, "username": "ann"}, to="a@example.com",
                                     sender="x@example.com")
    assert msg["Subject"] == "Hi ann"


async def test_a_mail_whose_link_expired_unsent_is_abandoned(make_engine: EngineFactory,
                                                             clock: ManualClock) -> None:
    engine = await quiet(make_engine, reset_token_ttl=600)
    await engine.account.register("slow", PASSWORD)
    await engine.account.forgot("slow@example.com", "127.0.0.1")  # nobody: nothing queued
    await engine.records.update_user((await engine.users.user_by_name("slow")).id,  # type: ignore[union-attr]
                                     email="slow@example.com")
    await engine.account.forgot("slow@example.com", "127.0.0.1")
    assert await engine.mailer.outbox.depth() == 1
    clock.advance(601)
    assert await engine.mailer.send_due() == 0
    assert await engine.mailer.outbox.depth() == 0
    assert await engine.mailer.outbox.pending() == []


async def test_a_deleted_account_gets_no_more_mail(make_engine: EngineFactory) -> None:
    """Mails still queued for an account (a reset link, a change to a new address) are
    dropped with it; other people's mails stay."""
    engine = await quiet(make_engine)
    await engine.account.register("leaver", PASSWORD, "leaver@example.com")
    await engine.account.register("stayer", PASSWORD, "stayer@example.com")
    await engine.account.forgot("leaver@example.com", "127.0.0.1")
    leaver = await engine.users.user_by_name("leaver")
    assert leaver is not None
    principal = Principal(user=leaver, auth="session", scopes=())
    await engine.account.request_change(principal, "new-leaver@example.com", PASSWORD,
                                        "127.0.0.1")
    before = {r["to_addr"] for r in await engine.mailer.outbox.pending("to_addr")}
    assert {"leaver@example.com", "new-leaver@example.com"} <= before
    await engine.account.delete(principal, PASSWORD, "127.0.0.1")
    after = {r["to_addr"] for r in await engine.mailer.outbox.pending("to_addr")}
    assert after == {"stayer@example.com"}
