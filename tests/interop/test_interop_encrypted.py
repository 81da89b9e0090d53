"""Encrypted tokens (``TOKEN_ENCRYPTION=true``) read by resource servers built on other JOSE
libraries than authgate's (joserfc, PyJWT): the private JWK from ``authgate keys
export-decryption-key`` decrypts the JWE, the inner signed token verifies from the JWKS
alone (issue 17, item 4). Node's ``jose`` (``compactDecrypt`` then ``jwtVerify``) and
Python's ``jwcrypto``. Each also refuses a token whose ciphertext or tag was tampered with,
an inner token altered and re-encrypted to the right key, and a wrong audience.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from joserfc import jwe as joserfc_jwe
from joserfc.jwk import ECKey

from tests.conftest import Server
from tests.interop.test_interop import node, node_modules, tampered  # noqa: F401 (fixtures)

ENC_ALGS = ("ECDH-ES+A256KW", "A256GCM")


@pytest.fixture(scope="module")
def enc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("enc-interop"), {"token_encryption": True}).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def enc_tokens(enc_server: Server) -> dict[str, Any]:
    """An encrypted access token, its user's id and the exported decryption key."""
    srv = enc_server
    username, password = srv.new_user("interop-enc", roles=("reports",))
    r = httpx.post(f"{srv.url}/auth/token", data={"grant_type": "password",
                                                  "username": username,
                                                  "password": password})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    assert token.count(".") == 4, token  # a compact JWE, not a JWS
    me = httpx.get(f"{srv.url}/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    done = srv.cli("keys", "export-decryption-key")
    assert done.returncode == 0, done.stderr
    assert "PRIVATE key" in done.stderr
    jwk = json.loads(done.stdout)
    assert jwk["use"] == "enc" and jwk["alg"] == "ECDH-ES+A256KW" and "d" in jwk
    return {"access": token, "id": me.json()["id"], "jwk": jwk, "username": username}


def flip(token: str, segment: int) -> str:
    """``token`` with one base64url character in the middle of ``segment`` changed."""
    parts = token.split(".")
    text = parts[segment]
    mid = len(text) // 2
    parts[segment] = text[:mid] + ("A" if text[mid] != "A" else "B") + text[mid + 1:]
    return ".".join(parts)


def reencrypted_tampered(token: str, jwk: dict[str, Any]) -> str:
    """Decrypt, alter the inner token's claims (keeping its signature), encrypt again to the
    same public key: the JWE is valid, only the signature check can catch it."""
    key = ECKey.import_key(jwk)
    inner = joserfc_jwe.decrypt_compact(token, key, algorithms=list(ENC_ALGS)).plaintext
    assert inner is not None
    header = {"alg": ENC_ALGS[0], "enc": ENC_ALGS[1], "cty": "JWT", "kid": jwk["kid"]}
    public = ECKey.import_key({k: jwk[k] for k in ("kty", "crv", "x", "y")})
    return joserfc_jwe.encrypt_compact(header, tampered(inner.decode()).encode(), public,
                                       algorithms=list(ENC_ALGS))


# -- Node jose --------------------------------------------------------------------------------

JOSE_DECRYPT_VERIFY = """
import * as jose from 'jose';
const [jwkJson, token, jwksUrl, issuer, audience] = process.argv.slice(2);
const key = await jose.importJWK(JSON.parse(jwkJson), 'ECDH-ES+A256KW');
const JWKS = jose.createRemoteJWKSet(new URL(jwksUrl));
try {
  const { plaintext, protectedHeader: outer } = await jose.compactDecrypt(token, key, {
    keyManagementAlgorithms: ['ECDH-ES+A256KW'], contentEncryptionAlgorithms: ['A256GCM'],
  });
  if (outer.cty !== 'JWT') throw Object.assign(new Error('not a nested JWT'), { code: 'CTY' });
  const inner = new TextDecoder().decode(plaintext);
  const { payload, protectedHeader } = await jose.jwtVerify(inner, JWKS, {
    issuer, audience, typ: 'at+jwt', algorithms: ['EdDSA'],
  });
  console.log(JSON.stringify({ ok: true, payload, protectedHeader, outer }));
} catch (err) {
  console.log(JSON.stringify({ ok: false, code: err.code || String(err) }));
}
"""


def test_node_jose_decrypts_then_verifies(enc_server: Server, enc_tokens: dict[str, Any],
                                          node: Any) -> None:  # noqa: F811
    jwks_url = enc_server.url + "/.well-known/jwks.json"
    jwk = json.dumps(enc_tokens["jwk"])

    def run(token: str, audience: str = "authgate") -> Any:
        return node(JOSE_DECRYPT_VERIFY, jwk, token, jwks_url, enc_server.url, audience)

    out = run(enc_tokens["access"])
    assert out["ok"] is True, out
    assert out["payload"]["sub"] == enc_tokens["id"]
    assert out["payload"]["iss"] == enc_server.url
    assert out["payload"]["aud"] == "authgate"
    assert out["payload"]["roles"] == ["reports"]
    assert out["protectedHeader"]["alg"] == "EdDSA"
    assert out["outer"]["alg"] == "ECDH-ES+A256KW" and out["outer"]["enc"] == "A256GCM"
    assert out["outer"]["kid"] == enc_tokens["jwk"]["kid"]
    # jose really checks: ciphertext, tag, an altered inner token, the audience
    assert run(flip(enc_tokens["access"], 3)) == {"ok": False,
                                                  "code": "ERR_JWE_DECRYPTION_FAILED"}
    assert run(flip(enc_tokens["access"], 4)) == {"ok": False,
                                                  "code": "ERR_JWE_DECRYPTION_FAILED"}
    forged = reencrypted_tampered(enc_tokens["access"], enc_tokens["jwk"])
    assert run(forged) == {"ok": False, "code": "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"}
    assert run(enc_tokens["access"], "other") == {"ok": False,
                                                  "code": "ERR_JWT_CLAIM_VALIDATION_FAILED"}


# -- Python jwcrypto --------------------------------------------------------------------------

def jwcrypto_read(token: str, jwk: dict[str, Any], jwks: dict[str, Any], issuer: str,
                  audience: str = "authgate") -> dict[str, Any]:
    """What a jwcrypto resource server does: decrypt with the exported key (only the one
    alg/enc pair allowed), then verify the inner JWT against the JWKS and check claims."""
    from jwcrypto import jwe, jwt
    from jwcrypto import jwk as jwcrypto_jwk

    outer = jwe.JWE()
    outer.allowed_algs = list(ENC_ALGS)
    outer.deserialize(token, key=jwcrypto_jwk.JWK(**jwk))
    assert outer.jose_header["cty"] == "JWT"
    keyset = jwcrypto_jwk.JWKSet.from_json(json.dumps(jwks))
    inner = jwt.JWT(jwt=outer.payload.decode(), key=keyset, algs=["EdDSA"],
                    expected_type="JWS",
                    check_claims={"iss": issuer, "aud": audience, "exp": None, "sub": None})
    claims: dict[str, Any] = json.loads(inner.claims)
    return claims


# jwcrypto can warn (DeprecationWarning, by default in some releases, opt-in through
# jwa.default_warn_deprecated_algorithms in others) that the JWS alg "EdDSA" is deprecated
# in favour of "Ed25519" (RFC 9864). The suite turns warnings into errors, so that one
# warning, and only it, is let through here.
@pytest.mark.filterwarnings("ignore:EdDSA is deprecated:DeprecationWarning")
def test_jwcrypto_decrypts_then_verifies(enc_server: Server,
                                         enc_tokens: dict[str, Any]) -> None:
    from jwcrypto.common import JWException
    from jwcrypto.jwe import InvalidJWEData
    from jwcrypto.jws import InvalidJWSSignature
    from jwcrypto.jwt import JWTInvalidClaimValue

    jwks = httpx.get(f"{enc_server.url}/.well-known/jwks.json").json()
    jwk = enc_tokens["jwk"]
    claims = jwcrypto_read(enc_tokens["access"], jwk, jwks, enc_server.url)
    assert claims["sub"] == enc_tokens["id"]
    assert claims["iss"] == enc_server.url and claims["aud"] == "authgate"
    assert claims["roles"] == ["reports"]
    for segment in (3, 4):  # ciphertext, tag
        with pytest.raises(InvalidJWEData):
            jwcrypto_read(flip(enc_tokens["access"], segment), jwk, jwks, enc_server.url)
    with pytest.raises((InvalidJWSSignature, JWException)):
        jwcrypto_read(reencrypted_tampered(enc_tokens["access"], jwk), jwk, jwks,
                      enc_server.url)
    with pytest.raises(JWTInvalidClaimValue):
        jwcrypto_read(enc_tokens["access"], jwk, jwks, enc_server.url, audience="other")
    with pytest.raises(JWTInvalidClaimValue):
        jwcrypto_read(enc_tokens["access"], jwk, jwks, "https://elsewhere.example")
