"""Known-answer JOSE vectors from the RFCs (no server): authgate.keys' thumbprints and JWKs,
the JWS layer (PyJWT + cryptography) against RFC 8037, 7515, 7517 and 7520, and the
strict JWT gate of authgate.tokens against the RFCs' negative vectors and arbitrary input."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import string
import time
import warnings
from pathlib import Path
from typing import Any, cast

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authgate.errors import InvalidToken
from authgate.keys import KeyRing, public_jwk, thumbprint
from authgate.tokens import AccessTokens, peek_header, strict_json
from tests.tokens.forge import (
    RFC8037,
    RFC8037_KID,
    VECTORS,
    b64u,
    b64u_decode,
    compact,
    ed_signer,
    hs_signer,
    rfc8037_private_key,
    write_rfc8037_pem,
)

RFC7515 = {v["id"]: v for v in VECTORS["rfc7515_appendix_A"]}
RFC7520 = {v["id"]: v for v in VECTORS["rfc7520_section4"]["vectors"]}
ISSUER = "https://auth.example.test"
AUDIENCE = "https://api.example.test"


def signing_input(header_octets: str, payload_octets: str) -> bytes:
    return f"{b64u(header_octets.encode())}.{b64u(payload_octets.encode())}".encode()


def pyjwk(jwk: dict[str, Any], alg: str) -> Any:
    return jwt.PyJWK({**jwk, "alg": alg}).key


# -- rings and verifiers built the way the server builds them --------------------------------

def ed_ring(tmp_path: Path) -> KeyRing:
    ring = KeyRing(cast(Any, None), "EdDSA", key_file=write_rfc8037_pem(tmp_path / "k.pem"))
    asyncio.run(ring.load(time.time()))
    return ring


def hs_ring(secret: bytes) -> KeyRing:
    ring = KeyRing(cast(Any, None), "HS256", hs256_secret=secret)
    asyncio.run(ring.load(time.time()))
    return ring


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    return ed_ring(tmp_path_factory.mktemp("ring"))


@pytest.fixture(scope="module")
def verifier(ring: KeyRing) -> AccessTokens:
    return AccessTokens(ring, ISSUER, AUDIENCE, ttl=900)


# -- RFC 8037 Appendix A ------------------------------------------------------------------------

def test_rfc8037_a3_thumbprint() -> None:
    public = RFC8037["A.2_public_key_jwk"]
    expected = RFC8037["A.3_thumbprint"]
    assert thumbprint(public) == expected["thumbprint_b64url"]
    # and the hash is over exactly the RFC's canonical JSON
    canonical = expected["canonical_json"].encode()
    assert hashlib.sha256(canonical).hexdigest() == expected["sha256_hex"]
    assert b64u(hashlib.sha256(canonical).digest()) == expected["thumbprint_b64url"]
    # extra members never change it
    assert thumbprint({**public, "kid": "x", "use": "sig", "alg": "EdDSA"}) == \
        expected["thumbprint_b64url"]


def test_rfc8037_public_jwk_from_key() -> None:
    jwk = public_jwk("EdDSA", rfc8037_private_key().public_key())
    assert jwk == {**RFC8037["A.2_public_key_jwk"], "kid": RFC8037_KID, "alg": "EdDSA",
                   "use": "sig"}
    assert "d" not in jwk


def test_rfc8037_a4_signature_byte_for_byte() -> None:
    vector = RFC8037["A.4_signing"]
    key = rfc8037_private_key()
    data = signing_input(vector["protected_header_octets"], vector["payload_octets"])
    assert data.decode() == vector["signing_input"]
    assert key.sign(data).hex() == vector["signature_hex"]
    assert compact(vector["protected_header_octets"].encode(),
                   vector["payload_octets"].encode(), ed_signer(key)) == vector["compact"]
    # PyJWT's JWS layer, given the same header octets, reproduces the whole compact form
    produced = jwt.api_jws.encode(vector["payload_octets"].encode(), key, algorithm="EdDSA",
                                  headers={"typ": None})
    assert produced == vector["compact"]


def test_rfc8037_a5_verification() -> None:
    vector = RFC8037["A.5_validation"]
    key = pyjwk(vector["public_jwk"], "EdDSA")
    payload = jwt.api_jws.decode(vector["compact"], key, algorithms=["EdDSA"])
    assert payload == RFC8037["A.4_signing"]["payload_octets"].encode()
    head, body, sig = vector["compact"].split(".")
    flipped = bytearray(b64u_decode(sig))
    flipped[0] ^= 1
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.api_jws.decode(f"{head}.{body}.{b64u(bytes(flipped))}", key, algorithms=["EdDSA"])


def test_rfc8037_a5_is_not_an_access_token(verifier: AccessTokens) -> None:
    """A valid JWS, but no typ/kid and a payload that is not a JSON object."""
    with pytest.raises(InvalidToken):
        verifier.verify(RFC8037["A.5_validation"]["compact"], time.time())


# -- RFC 7515 Appendix A --------------------------------------------------------------------------

def test_rfc7515_a1_hmac_byte_for_byte() -> None:
    vector = RFC7515["RFC7515-A.1"]
    key = b64u_decode(vector["key_jwk"]["k"])
    data = signing_input(vector["protected_header_octets"], vector["payload_octets"])
    assert data.decode() == vector["compact"].rsplit(".", 1)[0]
    mac = hmac.new(key, data, hashlib.sha256).digest()
    assert f"{data.decode()}.{b64u(mac)}" == vector["compact"]
    payload = jwt.api_jws.decode(vector["compact"], key, algorithms=["HS256"])
    assert payload == vector["payload_octets"].encode()


def test_rfc7515_a2_rsa_byte_for_byte() -> None:
    """PKCS#1 v1.5 is deterministic: reproduce, and verify."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    vector = RFC7515["RFC7515-A.2"]
    private = pyjwk(vector["key_jwk"], "RS256")
    assert isinstance(private, rsa.RSAPrivateKey)
    data = signing_input(vector["protected_header_octets"], vector["payload_octets"])
    signature = private.sign(data, padding.PKCS1v15(), hashes.SHA256())
    assert f"{data.decode()}.{b64u(signature)}" == vector["compact"]
    public = pyjwk(vector["public_jwk"], "RS256")
    assert jwt.api_jws.decode(vector["compact"], public, algorithms=["RS256"]) == \
        vector["payload_octets"].encode()


@pytest.mark.parametrize("vid,alg", [("RFC7515-A.3", "ES256"), ("RFC7515-A.4", "ES512")])
def test_rfc7515_ecdsa_verify(vid: str, alg: str) -> None:
    vector = RFC7515[vid]
    public = pyjwk(vector["public_jwk"], alg)
    assert jwt.api_jws.decode(vector["compact"], public, algorithms=[alg]) == \
        vector["payload_octets"].encode()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.api_jws.decode(vector["compact"][:-4] + "AAAA", public, algorithms=[alg])


@pytest.mark.parametrize("vid", ["RFC7520-4.1", "RFC7520-4.2", "RFC7520-4.3", "RFC7520-4.4"])
def test_rfc7520_section4_verify(vid: str) -> None:
    vector = RFC7520[vid]
    key = pyjwk(vector["verification_key_jwk"], vector["alg"])
    payload = jwt.api_jws.decode(vector["compact"], key, algorithms=[vector["alg"]])
    assert payload.decode() == VECTORS["rfc7520_section4"]["payload_text"]


def test_rfc7517_a1_thumbprints() -> None:
    section = VECTORS["rfc7517_appendix_A1_public_jwks"]
    got = [thumbprint(k) for k in section["jwks"]["keys"]]
    assert got == section["rfc7638_thumbprints"]


# -- negative vectors through authgate.tokens ---------------------------------------------------

@pytest.mark.parametrize("vid", ["RFC7515-A.5", "RFC7515-AppE-negative-crit"])
def test_rfc7515_negative_vectors_rejected(ring: KeyRing, verifier: AccessTokens,
                                           vid: str) -> None:
    token = RFC7515[vid]["compact"]
    with pytest.raises(InvalidToken):
        peek_header(token, ring)
    with pytest.raises(InvalidToken):
        verifier.verify(token, time.time())
    with pytest.raises(InvalidToken):
        verifier.verify(token, 1300819380 - 3600)  # not for want of time either


def test_rfc7515_a1_as_a_jwt_is_expired() -> None:
    """The A.1 signature is valid, but the JWT expired in 2011."""
    vector = RFC7515["RFC7515-A.1"]
    key = b64u_decode(vector["key_jwk"]["k"])
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(vector["compact"], key, algorithms=["HS256"])
    claims = jwt.decode(vector["compact"], key, algorithms=["HS256"],
                        options={"verify_exp": False})
    assert claims["exp"] == 1300819380
    # authgate, configured with that very key, refuses it
    ring = hs_ring(key)
    tokens = AccessTokens(ring, "joe", AUDIENCE, ttl=900)
    with pytest.raises(InvalidToken):
        tokens.verify(vector["compact"], time.time())
    # and with the same key and claims in authgate's own shape, expiry alone decides
    kid = next(iter(ring.keys))
    shaped = compact({"alg": "HS256", "kid": kid, "typ": "at+jwt"},
                     {**json.loads(vector["payload_octets"]), "sub": "u", "aud": AUDIENCE,
                      "iat": 1300819380 - 600, "jti": "j"}, hs_signer(key))
    assert tokens.verify(shaped, 1300819380 - 1)["iss"] == "joe"
    for now in (1300819380, time.time()):
        with pytest.raises(InvalidToken):
            tokens.verify(shaped, now)


def test_verifier_round_trip(ring: KeyRing, verifier: AccessTokens) -> None:
    """Control for the negatives above: authgate's own tokens verify, and sign with the
    RFC 8037 key under its thumbprint."""
    now = time.time()
    token, claims = verifier.issue(sub="u1", scope="a b", roles=["r"], family_id="f1", now=now)
    assert peek_header(token, ring) == RFC8037_KID
    assert verifier.verify(token, now) == claims
    with pytest.raises(InvalidToken):
        verifier.verify(token, now + 900)
    other = ed25519.Ed25519PrivateKey.generate()
    head, payload, _ = token.split(".")
    forged = f"{head}.{payload}.{b64u(other.sign(f'{head}.{payload}'.encode()))}"
    with pytest.raises(InvalidToken):
        verifier.verify(forged, now)


# -- property tests: nothing but InvalidToken ever escapes --------------------------------------

B64URL = string.ascii_letters + string.digits + "-_"
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)


def _only_invalid_token(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except InvalidToken:
        return None


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_strict_json_arbitrary_text(text: str) -> None:
    _only_invalid_token(strict_json, text)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_strict_json_arbitrary_bytes_encoded(raw: bytes) -> None:
    try:
        strict_json(b64u(raw))
    except InvalidToken:
        return
    json.loads(raw.decode("utf-8"))  # anything accepted is UTF-8 JSON


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_strict_json_refuses_non_json_numbers(literal: str) -> None:
    with pytest.raises(InvalidToken):
        strict_json(b64u(f'{{"exp":{literal}}}'.encode()))


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_strict_json_round_trips_json(value: Any) -> None:
    text = json.dumps(value)
    result = _only_invalid_token(strict_json, b64u(text.encode()))
    if result is not None:
        assert result == value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_peek_header_arbitrary_text(ring: KeyRing, text: str) -> None:
    result = _only_invalid_token(peek_header, text, ring)
    assert result is None or result == RFC8037_KID


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(alphabet=B64URL + "=+/. ", max_size=60), min_size=1, max_size=6))
def test_peek_header_arbitrary_segments(ring: KeyRing, parts: list[str]) -> None:
    _only_invalid_token(peek_header, ".".join(parts), ring)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON_VALUES, JSON_VALUES, st.binary(max_size=70))
def test_peek_header_and_verify_arbitrary_json(ring: KeyRing, verifier: AccessTokens,
                                               header: Any, payload: Any, sig: bytes) -> None:
    token = ".".join([b64u(json.dumps(header).encode()), b64u(json.dumps(payload).encode()),
                      b64u(sig)])
    _only_invalid_token(peek_header, token, ring)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _only_invalid_token(verifier.verify, token, time.time())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["iss", "sub", "aud", "exp", "iat", "nbf", "jti",
                                        "scope", "roles", "sid"]), JSON_VALUES))
def test_validly_signed_arbitrary_claims(verifier: AccessTokens, claims: dict[str, Any]) -> None:
    """Signed with the real key: whatever the claims, verify answers claims or InvalidToken
    (never TypeError, OverflowError, …)."""
    token = compact({"alg": "EdDSA", "kid": RFC8037_KID, "typ": "at+jwt"}, claims,
                    ed_signer(rfc8037_private_key()))
    result = _only_invalid_token(verifier.verify, token, time.time())
    if result is not None:
        assert result["iss"] == ISSUER and isinstance(result["sub"], str)
