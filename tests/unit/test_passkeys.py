"""core/passkeys.py, core/passkey_parsing.py and core/notices.py without HTTP: the response
parsers never fail with anything but a 4xx error (hypothesis), the stateless sign-in
challenge, and the notices (only to a user with an address; an operator's reset says so)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from authgate.clock import ManualClock
from authgate.core.passkey_parsing import parse_assertion, parse_attestation
from authgate.core.passkeys import CHALLENGE_TTL
from authgate.engine import Engine
from authgate.errors import AuthGateError, InvalidPasskey
from authgate.store import schema as t

PW = "correct battery horse stapler"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
_b64ish = st.one_of(st.text(max_size=40), st.binary(max_size=80).map(b64))
_client_data = st.one_of(
    _b64ish,
    st.fixed_dictionaries({"type": st.sampled_from(["webauthn.get", "webauthn.create", "x"]),
                           "challenge": _b64ish, "origin": st.text(max_size=20)},
                          optional={"crossOrigin": _json}).map(
        lambda d: b64(json.dumps(d).encode())))
_assertion = st.fixed_dictionaries({
    "id": _b64ish, "rawId": _b64ish, "type": st.sampled_from(["public-key", "x", ""]),
    "response": st.fixed_dictionaries({
        "clientDataJSON": _client_data, "authenticatorData": _b64ish,
        "signature": _b64ish}, optional={"userHandle": st.one_of(_b64ish, st.none())})},
    optional={"clientExtensionResults": _json, "authenticatorAttachment": _json})
_attestation = st.fixed_dictionaries({
    "id": _b64ish, "rawId": _b64ish, "type": st.sampled_from(["public-key", "x"]),
    "response": st.fixed_dictionaries({"clientDataJSON": _client_data,
                                       "attestationObject": _b64ish},
                                      optional={"transports": _json})})


@settings(max_examples=300, deadline=None)
@given(st.one_of(_json, _assertion, _assertion.map(json.dumps)))
def test_parse_assertion_refuses_with_4xx_only(value: Any) -> None:
    try:
        parse_assertion(value)
    except AuthGateError as exc:
        assert 400 <= exc.status < 500


@settings(max_examples=300, deadline=None)
@given(st.one_of(_json, _attestation, _attestation.map(json.dumps)))
def test_parse_attestation_refuses_with_4xx_only(value: Any) -> None:
    try:
        parse_attestation(value)
    except AuthGateError as exc:
        assert 400 <= exc.status < 500


async def test_the_sign_in_challenge_is_stateless_mac_d_and_expires(
        engine: Engine, clock: ManualClock) -> None:
    passkeys = engine.passkeys
    options = await passkeys.login_options()
    raw = base64.urlsafe_b64decode(options["challenge"] + "==")
    assert len(raw) == 48
    await passkeys._spend_login_challenge(raw)
    with pytest.raises(InvalidPasskey):  # once
        await passkeys._spend_login_challenge(raw)
    tampered = bytearray(await _fresh(engine))
    tampered[10] ^= 1
    with pytest.raises(InvalidPasskey):
        await passkeys._spend_login_challenge(bytes(tampered))
    old = await _fresh(engine)
    clock.advance(CHALLENGE_TTL)
    with pytest.raises(InvalidPasskey):
        await passkeys._spend_login_challenge(old)


async def _fresh(engine: Engine) -> bytes:
    options = await engine.passkeys.login_options()
    return base64.urlsafe_b64decode(options["challenge"] + "==")


async def _outbox(engine: Engine) -> list[dict[str, Any]]:
    async with engine.db.read() as conn:
        rows = (await conn.execute(sa.select(t.mail_outbox))).mappings().all()
    return [dict(r) for r in rows]


async def test_notices_go_only_to_an_address(engine: Engine) -> None:
    nobody = await engine.users.create_user("nomail", PW)
    assert await engine.notices.factor_changed(nobody.id, "added", "passkey", "Key") is False
    assert await _outbox(engine) == []
    ann = await engine.users.create_user("ann", PW)
    await engine.records.update_user(ann.id, logged_at=0.0, email="ann@example.test")
    assert await engine.notices.factor_changed(ann.id, "removed", "totp", by_operator=True)
    (mail,) = await _outbox(engine)
    assert mail["to_addr"] == "ann@example.test" and mail["template"] == "factor_notice"
    context = json.loads(mail["context"])
    assert context["method"] == "An authenticator app" and context["by_operator"] is True
    assert mail["secret"] is None  # a notice carries no token
    # the template renders with that context
    message = engine.mailer.renderer.message("factor_notice", context, to="a@b", sender="c@d")
    assert "by an administrator" in message.get_body(("plain",)).get_content()
