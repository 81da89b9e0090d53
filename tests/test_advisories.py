"""Every JWT attack class of security-requirements §F (JWT-01..19), against a real server.

The server signs with the RFC 8037 Appendix A Ed25519 key (``SIGNING_KEY_FILE``), with
``ISSUER``/``AUDIENCE`` as the vector file assumes. The tests hold that private key, so most
attack tokens are *validly signed by the server's own key* and differ from an accepted token
in exactly one way: a refusal then proves the server checks that one thing.

Every refusal is ``GET /auth/me`` → 401, ``WWW-Authenticate: Bearer error="invalid_token"``,
byte-for-byte the same body as for a garbage token, quickly, never 500.
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from tests.conftest import Server, server_class
from tests.tokens.forge import (
    DROP,
    ED25519_L,
    RFC8037_KID,
    Forger,
    b64u,
    b64u_decode,
    compact,
    ed_signer,
    hs_signer,
    jbytes,
    no_signer,
    rfc8037_private_key,
    segments,
    write_rfc8037_pem,
)

ISSUER = "https://auth.example.test"
AUDIENCE = "https://api.example.test"
FAST = 3.0  # seconds: every refusal (and the `|sleep 10` kid) must come back well within


# -- fixtures -----------------------------------------------------------------------------

@dataclass
class Ctx:
    server: Server
    forger: Forger
    user_id: str
    admin_id: str
    issued_access: str
    issued_refresh: str
    refusal_body: bytes
    jwks_text: str
    http: httpx.Client
    attacker: ed25519.Ed25519PrivateKey = field(default_factory=ed25519.Ed25519PrivateKey.generate)

    def server_now(self) -> float:
        return time.time() + self.server.offset

    def advance_to(self, target: float) -> None:
        """Move the server clock so that its ``now`` is about ``target``."""
        self.server.advance(target - self.server_now() - 0.02)


@pytest.fixture(scope="module")
def srv(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("advisories")
    pem = write_rfc8037_pem(work / "rfc8037-ed25519.pem")
    server = server_class(request)(work, {"signing_key_file": str(pem), "issuer": ISSUER,
                           "audience": AUDIENCE}).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ctx(srv: Server) -> Iterator[Ctx]:
    username, password = srv.new_user("victim")
    admin_name, _ = srv.new_user("admin", roles=("admin",))
    r = httpx.post(f"{srv.url}/auth/token", data={"grant_type": "password",
                                                  "username": username,
                                                  "password": password})
    assert r.status_code == 200, r.text
    access, refresh = r.json()["access_token"], r.json()["refresh_token"]
    me = httpx.get(f"{srv.url}/auth/me", headers={"Authorization": f"Bearer {access}"})
    assert me.status_code == 200, me.text
    listing = srv.cli("users", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    admin_id = next(u["id"] for u in json.loads(listing.stdout) if u["username"] == admin_name)
    garbage = httpx.get(f"{srv.url}/auth/me", headers={"Authorization": "Bearer not-a-token"})
    assert garbage.status_code == 401
    jwks = httpx.get(f"{srv.url}/.well-known/jwks.json")
    kids = [k["kid"] for k in jwks.json()["keys"]]
    assert kids == [RFC8037_KID], "the server must publish the RFC 8037 key it was given"
    forger = Forger(key=rfc8037_private_key(), kid=RFC8037_KID, issuer=ISSUER,
                    audience=AUDIENCE, sub=me.json()["id"],
                    clock=lambda: time.time() + srv.offset)
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        yield Ctx(server=srv, forger=forger, user_id=me.json()["id"], admin_id=admin_id,
                  issued_access=access, issued_refresh=refresh,
                  refusal_body=garbage.content, jwks_text=jwks.text, http=http)


def bearer(ctx: Ctx, token: str, path: str = "/auth/me") -> tuple[httpx.Response, float]:
    started = time.monotonic()
    r = ctx.http.get(path, headers={"Authorization": f"Bearer {token}"})
    return r, time.monotonic() - started


def assert_refused(ctx: Ctx, token: str) -> httpx.Response:
    r, took = bearer(ctx, token)
    assert r.status_code == 401, f"accepted or mishandled ({r.status_code}): {r.text}"
    assert r.headers.get("www-authenticate") == 'Bearer error="invalid_token"'
    assert r.content == ctx.refusal_body, "every refusal must have the same body"
    assert took < FAST, f"refusal took {took:.2f} s"
    assert token[:40] not in r.text or len(token) < 8
    return r


def assert_accepted(ctx: Ctx, token: str, user_id: str | None = None) -> None:
    r, _ = bearer(ctx, token)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == (user_id or ctx.user_id)
    assert r.json()["auth"] == "token"


def server_public(ctx: Ctx) -> ed25519.Ed25519PublicKey:
    return rfc8037_private_key().public_key()


# -- positive controls -------------------------------------------------------------------

def test_positive_control_issued_token(ctx: Ctx) -> None:
    assert_accepted(ctx, ctx.issued_access)
    header, _ = segments(ctx.issued_access)
    assert header == {"alg": "EdDSA", "kid": RFC8037_KID, "typ": "at+jwt"}


def test_positive_control_forged_with_server_key(ctx: Ctx) -> None:
    """A correctly formed token signed with the server's key is accepted: so every refusal
    below is caused by the one defect each test adds."""
    assert_accepted(ctx, ctx.forger.token())
    # A token carries its user's roles as they are now (an old roles claim means the token
    # predates a role change, and is refused).
    assert_accepted(ctx, ctx.forger.token(claims=ctx.forger.claims(sub=ctx.admin_id,
                                                                   roles=["admin"])),
                    ctx.admin_id)


# -- JWT-02: alg none ----------------------------------------------------------------------

@pytest.mark.parametrize("keep_signature", [False, True], ids=["no-signature", "orig-signature"])
@pytest.mark.parametrize("spelling", ["none", "None", "NONE", "nOnE"])
def test_alg_none(ctx: Ctx, spelling: str, keep_signature: bool) -> None:
    f = ctx.forger
    claims = f.claims()
    original = f.token(claims=claims)
    none = compact(f.header(alg=spelling), claims, no_signer)
    if keep_signature:
        none = none + original.split(".")[2]
    assert_refused(ctx, none)


def test_alg_none_without_kid_or_typ(ctx: Ctx) -> None:
    assert_refused(ctx, compact({"alg": "none"}, ctx.forger.claims(), no_signer))


def test_rfc7515_a5_unsecured_jws(ctx: Ctx) -> None:
    from tests.tokens.forge import VECTORS

    vector = next(v for v in VECTORS["rfc7515_appendix_A"] if v["id"] == "RFC7515-A.5")
    assert_refused(ctx, vector["compact"])


def test_rfc7515_appendix_e_crit(ctx: Ctx) -> None:
    from tests.tokens.forge import VECTORS

    vector = next(v for v in VECTORS["rfc7515_appendix_A"]
                  if v["id"] == "RFC7515-AppE-negative-crit")
    assert_refused(ctx, vector["compact"])


# -- JWT-01: the algorithm is pinned, case-sensitively -------------------------------------

@pytest.mark.parametrize("alg", ["eddsa", "EDDSA", "EdDsa", "Ed25519", "EdDSA ", ""])
def test_alg_case_variants_signed_with_server_key(ctx: Ctx, alg: str) -> None:
    f = ctx.forger
    assert_refused(ctx, f.token(header=f.header(alg=alg)))


@pytest.mark.parametrize("alg", [["EdDSA"], None, 1, {"EdDSA": True}],
                         ids=["list", "null", "int", "object"])
def test_alg_not_a_string(ctx: Ctx, alg: Any) -> None:
    f = ctx.forger
    assert_refused(ctx, f.token(header=f.header(alg=alg)))


def test_hs256_with_another_secret(ctx: Ctx) -> None:
    f = ctx.forger
    assert_refused(ctx, f.token(header=f.header(alg="HS256"),
                                sign=hs_signer(b"k" * 64)))


def test_es256_with_attacker_key(ctx: Ctx) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    f = ctx.forger
    assert_refused(ctx, f.token(header=f.header(alg="ES256"), sign=sign))


# -- JWT-03: key confusion ------------------------------------------------------------------

def _public_forms(ctx: Ctx) -> dict[str, bytes]:
    public = server_public(ctx)
    jwk = json.loads(ctx.jwks_text)["keys"][0]
    return {
        "raw": public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        "pem": public.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo),
        "pem-no-newline": public.public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo).strip(),
        "der": public.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo),
        "openssh": public.public_bytes(serialization.Encoding.OpenSSH,
                                       serialization.PublicFormat.OpenSSH),
        "jwk-json-as-served": jbytes(jwk),
        "jwk-json-thumbprint-form": jbytes({"crv": "Ed25519", "kty": "OKP", "x": jwk["x"]}),
        "jwks-body": ctx.jwks_text.encode(),
        "x-b64url": jwk["x"].encode(),
    }


@pytest.mark.parametrize("form", ["raw", "pem", "pem-no-newline", "der", "openssh",
                                  "jwk-json-as-served", "jwk-json-thumbprint-form",
                                  "jwks-body", "x-b64url"])
def test_hs256_key_confusion_with_server_public_key(ctx: Ctx, form: str) -> None:
    f = ctx.forger
    secret = _public_forms(ctx)[form]
    assert_refused(ctx, f.token(header=f.header(alg="HS256"), sign=hs_signer(secret)))


@pytest.mark.parametrize("with_kid", [True, False], ids=["server-kid", "no-kid"])
def test_hs256_empty_key(ctx: Ctx, with_kid: bool) -> None:
    f = ctx.forger
    header = f.header(alg="HS256") if with_kid else f.header(alg="HS256", kid=DROP)
    assert_refused(ctx, f.token(header=header, sign=hs_signer(b"")))


# -- JWT-05: keys named in the header ------------------------------------------------------

class Canary:
    """A local HTTP listener that records every request (it must receive none)."""

    def __init__(self, body: bytes) -> None:
        hits: list[str] = []
        self.hits = hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _attacker_jwk(key: ed25519.Ed25519PrivateKey) -> dict[str, Any]:
    x = key.public_key().public_bytes(serialization.Encoding.Raw,
                                      serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64u(x), "kid": "attacker", "alg": "EdDSA",
            "use": "sig"}


@pytest.fixture
def canary(ctx: Ctx) -> Iterator[Canary]:
    c = Canary(jbytes({"keys": [_attacker_jwk(ctx.attacker)]}))
    yield c
    c.close()


@pytest.mark.parametrize("signer", ["attacker", "server"])
def test_header_jwk(ctx: Ctx, signer: str) -> None:
    f = ctx.forger
    jwk = _attacker_jwk(ctx.attacker)
    key = ctx.attacker if signer == "attacker" else f.key
    for kid in (RFC8037_KID, "attacker", DROP):
        assert_refused(ctx, f.token(header=f.header(jwk=jwk, kid=kid), sign=ed_signer(key)))


@pytest.mark.parametrize("signer", ["attacker", "server"])
@pytest.mark.parametrize("member", ["jku", "x5u"])
def test_header_url_not_fetched(ctx: Ctx, canary: Canary, member: str, signer: str) -> None:
    f = ctx.forger
    key = ctx.attacker if signer == "attacker" else f.key
    for kid in ("attacker", RFC8037_KID):
        header = f.header(kid=kid, **{member: f"{canary.url}/{member}/{uuid.uuid4().hex}"})
        assert_refused(ctx, f.token(header=header, sign=ed_signer(key)))
    time.sleep(0.3)
    assert canary.hits == [], f"the server fetched {canary.hits}"


def _self_signed_cert(key: ed25519.Ed25519PrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "auth.example.test")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .sign(key, None))
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("signer", ["attacker", "server"])
def test_header_x5c_self_signed(ctx: Ctx, signer: str) -> None:
    f = ctx.forger
    key = ctx.attacker if signer == "attacker" else f.key
    chain = [base64.b64encode(_self_signed_cert(key)).decode()]
    for kid in (RFC8037_KID, DROP):
        assert_refused(ctx, f.token(header=f.header(x5c=chain, kid=kid), sign=ed_signer(key)))


def test_attacker_key_with_server_kid(ctx: Ctx) -> None:
    assert_refused(ctx, ctx.forger.token(sign=ed_signer(ctx.attacker)))


# -- JWT-06: kid is an opaque lookup key ---------------------------------------------------

KID_INJECTIONS = {
    "path-traversal": ("../../../../../../dev/null", b""),
    "dev-null": ("/dev/null", b""),
    "sql-union": ("x' UNION SELECT '1';--", b"1"),
    "shell-sleep": ("|sleep 10", b""),
    "shell-sleep-subst": ("$(sleep 10)", b""),
}


@pytest.mark.parametrize("alg", ["HS256", "EdDSA"])
@pytest.mark.parametrize("case", list(KID_INJECTIONS))
def test_kid_injection(ctx: Ctx, case: str, alg: str) -> None:
    f = ctx.forger
    kid, secret = KID_INJECTIONS[case]
    sign = hs_signer(secret) if alg == "HS256" else f.sign
    started = time.monotonic()
    assert_refused(ctx, f.token(header=f.header(alg=alg, kid=kid), sign=sign))
    assert time.monotonic() - started < FAST


@pytest.mark.parametrize("kid", ["unknown", "", RFC8037_KID.lower(), RFC8037_KID + " ",
                                 RFC8037_KID + "\u0000", "0", "*"])
def test_unknown_kid_signed_with_server_key(ctx: Ctx, kid: str) -> None:
    """No fallback to "try every key": a token signed with the right key but naming another
    kid is refused."""
    f = ctx.forger
    assert_refused(ctx, f.token(header=f.header(kid=kid)))


def test_missing_kid(ctx: Ctx) -> None:
    f = ctx.forger
    assert_refused(ctx, f.token(header=f.header(kid=DROP)))


@pytest.mark.parametrize("kid", [[RFC8037_KID], 1, {"kid": RFC8037_KID}, None, True],
                         ids=["list", "int", "object", "null", "bool"])
def test_non_string_kid(ctx: Ctx, kid: Any) -> None:
    f = ctx.forger
    assert_refused(ctx, f.token(header=f.header(kid=kid)))


# -- JWT-07: crit and b64 ------------------------------------------------------------------

@pytest.mark.parametrize("crit", [
    pytest.param({"crit": ["http://example.com/UNDEFINED"],
                  "http://example.com/UNDEFINED": True}, id="unknown"),
    pytest.param({"crit": []}, id="empty"),
    pytest.param({"crit": ["x-missing"]}, id="lists-missing-param"),
    pytest.param({"crit": ["exp"]}, id="registered-name"),
    pytest.param({"crit": "b64"}, id="not-a-list"),
])
def test_crit(ctx: Ctx, crit: dict[str, Any]) -> None:
    f = ctx.forger
    assert_refused(ctx, f.token(header=f.header(**crit)))


@pytest.mark.parametrize("unencoded", [True, False], ids=["unencoded-payload", "b64-payload"])
def test_b64_false(ctx: Ctx, unencoded: bool) -> None:
    f = ctx.forger
    header = f.header(b64=False, crit=["b64"])
    if not unencoded:
        assert_refused(ctx, f.token(header=header))
        return
    head = b64u(jbytes(header))
    payload = jbytes(f.claims()).decode()
    signature = b64u(f.key.sign(f"{head}.{payload}".encode()))
    assert_refused(ctx, f"{head}.{payload}.{signature}")


# -- JWT-12: typ ---------------------------------------------------------------------------

@pytest.mark.parametrize("typ", ["JWT", DROP, "jwt", "refresh+jwt", "", None, ["at+jwt"],
                                 "at+jwt "],
                         ids=["JWT", "missing", "jwt", "refresh+jwt", "empty", "null", "list",
                              "trailing-space"])
def test_typ(ctx: Ctx, typ: Any) -> None:
    f = ctx.forger
    assert_refused(ctx, f.token(header=f.header(typ=typ)))


def test_refresh_token_as_bearer(ctx: Ctx) -> None:
    assert_refused(ctx, ctx.issued_refresh)


def test_access_token_as_refresh_token(ctx: Ctx) -> None:
    for token in (ctx.issued_access, ctx.forger.token()):
        r = ctx.http.post("/auth/token",
                       data={"grant_type": "refresh_token", "refresh_token": token})
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "invalid_grant"
        assert set(r.json()) == {"error", "error_description"}
        assert "access_token" not in r.text
    assert_accepted(ctx, ctx.issued_access)  # and it did not harm the token


# -- JWT-08 / JWT-09: times ----------------------------------------------------------------

def test_exp_past(ctx: Ctx) -> None:
    now = int(ctx.server_now())
    assert_refused(ctx, ctx.forger.token(claims=ctx.forger.claims(iat=now - 700, exp=now - 100)))


def test_exp_missing(ctx: Ctx) -> None:
    assert_refused(ctx, ctx.forger.token(claims=ctx.forger.claims(exp=DROP)))


@pytest.mark.parametrize("kind", ["string", "bool", "null", "list"])
def test_exp_not_a_number(ctx: Ctx, kind: str) -> None:
    now = int(ctx.server_now())
    value = {"string": str(now + 600), "bool": True, "null": None, "list": [now + 600]}[kind]
    assert_refused(ctx, ctx.forger.token(claims=ctx.forger.claims(exp=value)))


@pytest.mark.parametrize("literal", ["NaN", "Infinity"])
def test_exp_non_json_number_literal(ctx: Ctx, literal: str) -> None:
    f = ctx.forger
    payload = jbytes(f.claims(exp=0)).replace(b'"exp":0', f'"exp":{literal}'.encode())
    assert f'"exp":{literal}'.encode() in payload
    assert_refused(ctx, f.token(claims=payload))


def test_exp_equal_to_now(ctx: Ctx) -> None:
    """RFC 7519 §4.1.4: the current time MUST be before exp; leeway is 0 by default."""
    f = ctx.forger
    now = int(ctx.server_now())
    exp = now + 30
    seen = f.token(claims=f.claims(iat=now, exp=exp))
    fresh = f.token(claims=f.claims(iat=now, exp=exp))
    assert_accepted(ctx, seen)
    ctx.advance_to(exp - 1.5)
    assert_accepted(ctx, seen)  # one and a half seconds before: still good
    ctx.advance_to(exp + 0.05)
    assert_refused(ctx, seen)   # the cached verification honours exp too
    assert_refused(ctx, fresh)  # and a first verification at exp == now


def test_nbf_future(ctx: Ctx) -> None:
    now = int(ctx.server_now())
    assert_refused(ctx, ctx.forger.token(claims=ctx.forger.claims(nbf=now + 120)))
    assert_accepted(ctx, ctx.forger.token(claims=ctx.forger.claims(nbf=now - 5)))


def test_nbf_string(ctx: Ctx) -> None:
    now = int(ctx.server_now())
    assert_refused(ctx, ctx.forger.token(claims=ctx.forger.claims(nbf=str(now - 5))))


def test_iat_future(ctx: Ctx) -> None:
    now = int(ctx.server_now())
    assert_refused(ctx, ctx.forger.token(claims=ctx.forger.claims(iat=now + 120,
                                                                  exp=now + 600)))


@pytest.mark.parametrize("iat", [DROP, "now", None], ids=["missing", "string", "null"])
def test_iat_missing_or_not_a_number(ctx: Ctx, iat: Any) -> None:
    value = str(int(ctx.server_now())) if iat == "now" else iat
    assert_refused(ctx, ctx.forger.token(claims=ctx.forger.claims(iat=value)))


# -- JWT-10 / JWT-11: aud and iss ----------------------------------------------------------

@pytest.mark.parametrize("aud", [
    pytest.param("https://other.example.test", id="wrong"),
    pytest.param("https://api.example.test.attacker.example", id="look-alike"),
    pytest.param("https://api.example.test/", id="trailing-slash"),
    pytest.param("HTTPS://API.EXAMPLE.TEST", id="case"),
    pytest.param("https://api.example", id="prefix"),
    pytest.param("authgate", id="default-audience"),
    pytest.param(DROP, id="missing"),
    pytest.param(["https://other.example.test", "https://api.example.test.attacker.example"],
                 id="list-without-ours"),
    pytest.param([], id="empty-list"),
    pytest.param(None, id="null"),
    pytest.param({"aud": AUDIENCE}, id="object"),
])
def test_aud_refused(ctx: Ctx, aud: Any) -> None:
    assert_refused(ctx, ctx.forger.token(claims=ctx.forger.claims(aud=aud)))


def test_aud_list_containing_ours_accepted(ctx: Ctx) -> None:
    f = ctx.forger
    assert_accepted(ctx, f.token(claims=f.claims(aud=["https://other.example.test", AUDIENCE])))


@pytest.mark.parametrize("iss", [
    pytest.param("https://evil.example.test", id="wrong"),
    pytest.param("https://auth.example", id="prefix"),
    pytest.param("https://auth.example.test.evil.example", id="prefix-extended"),
    pytest.param("https://auth.example.test/", id="trailing-slash"),
    pytest.param("auth.example.test", id="substring"),
    pytest.param(DROP, id="missing"),
    pytest.param([ISSUER], id="list"),
    pytest.param(None, id="null"),
])
def test_iss_refused(ctx: Ctx, iss: Any) -> None:
    assert_refused(ctx, ctx.forger.token(claims=ctx.forger.claims(iss=iss)))


@pytest.mark.parametrize("claim", ["sub", "jti"])
def test_required_claim_missing(ctx: Ctx, claim: str) -> None:
    assert_refused(ctx, ctx.forger.token(claims=ctx.forger.claims(**{claim: DROP})))


# -- JWT-04: signature defects -------------------------------------------------------------

def test_signature_stripped(ctx: Ctx) -> None:
    head, payload, _ = ctx.forger.token().split(".")
    assert_refused(ctx, f"{head}.{payload}.")


@pytest.mark.parametrize("cut", [1, 2, 4, 43])
def test_signature_truncated(ctx: Ctx, cut: int) -> None:
    assert_refused(ctx, ctx.forger.token()[:-cut])


def test_signature_zeroed(ctx: Ctx) -> None:
    token = ctx.forger.token()
    head, payload, _ = token.split(".")
    assert_refused(ctx, f"{head}.{payload}.{b64u(bytes(64))}")


def test_signature_extended(ctx: Ctx) -> None:
    head, payload, sig = ctx.forger.token().split(".")
    longer = b64u(b64u_decode(sig) + bytes(1))
    assert_refused(ctx, f"{head}.{payload}.{longer}")


def test_payload_tampered(ctx: Ctx) -> None:
    """``sub`` swapped for the admin's id, the original signature kept."""
    f = ctx.forger
    claims = f.claims()
    head, _, sig = f.token(claims=claims).split(".")
    tampered = b64u(jbytes({**claims, "sub": ctx.admin_id}))
    assert_refused(ctx, f"{head}.{tampered}.{sig}")


def test_header_tampered(ctx: Ctx) -> None:
    f = ctx.forger
    _, payload, sig = f.token(header={"alg": "EdDSA", "kid": RFC8037_KID,
                                      "typ": "at+jwt"}).split(".")
    other_header = b64u(jbytes({"typ": "at+jwt", "alg": "EdDSA", "kid": RFC8037_KID}))
    assert_refused(ctx, f"{other_header}.{payload}.{sig}")


def test_signature_non_canonical_s_plus_l(ctx: Ctx) -> None:
    """RFC 8032 §5.1.7: S >= L must be refused (else one token has two signatures)."""
    token = ctx.forger.token()
    head, payload, sig = token.split(".")
    raw = b64u_decode(sig)
    s = int.from_bytes(raw[32:], "little")
    malleated = raw[:32] + (s + ED25519_L).to_bytes(32, "little")
    assert_accepted(ctx, token)
    assert_refused(ctx, f"{head}.{payload}.{b64u(malleated)}")


# -- JWT-14: structure and encoding --------------------------------------------------------

def _token_with_b64_specials(ctx: Ctx) -> str:
    for _ in range(200):
        token = ctx.forger.token()
        if "-" in token or "_" in token:
            return token
    raise AssertionError("could not make a token containing '-' or '_'")


def test_standard_base64_alphabet(ctx: Ctx) -> None:
    token = _token_with_b64_specials(ctx)
    assert_accepted(ctx, token)
    assert_refused(ctx, token.translate(str.maketrans("-_", "+/")))


def test_base64_padding(ctx: Ctx) -> None:
    token = ctx.forger.token()
    padded = ".".join(s + "=" * (-len(s) % 4) for s in token.split("."))
    assert padded != token
    assert_refused(ctx, padded)
    head, payload, sig = token.split(".")
    assert_refused(ctx, f"{head}.{payload}.{sig}==")


@pytest.mark.parametrize("where", ["after-first-dot", "inside-header", "inside-signature",
                                   "tab", "double-space-prefix"])
def test_embedded_whitespace(ctx: Ctx, where: str) -> None:
    token = ctx.forger.token()
    head, payload, sig = token.split(".")
    mangled = {
        "after-first-dot": f"{head}. {payload}.{sig}",
        "inside-header": f"{head[:10]} {head[10:]}.{payload}.{sig}",
        "inside-signature": f"{head}.{payload}.{sig[:20]} {sig[20:]}",
        "tab": f"{head}.{payload}\t.{sig}",
        "double-space-prefix": f"{head[:5]}  {head[5:]}.{payload}.{sig}",
    }[where]
    assert_refused(ctx, mangled)


@pytest.mark.parametrize("shape", ["1", "2", "4", "4-trailing-dot", "5", "empty"])
def test_segment_count(ctx: Ctx, shape: str) -> None:
    token = ctx.forger.token()
    head, payload, sig = token.split(".")
    mangled = {
        "1": head,
        "2": f"{head}.{payload}",
        "4": f"{token}.{sig}",
        "4-trailing-dot": f"{token}.",
        "5": f"{head}.{payload}.{sig}.{payload}.{sig}",
        "empty": "..",
    }[shape]
    assert_refused(ctx, mangled)


@pytest.mark.parametrize("header", [b"[]", b'"x"', b"1", b"null", b"true",
                                    b'["EdDSA","at+jwt"]'])
def test_header_not_an_object(ctx: Ctx, header: bytes) -> None:
    assert_refused(ctx, ctx.forger.token(header=header))


@pytest.mark.parametrize("payload", [b"[]", b"1", b"null", b'"x"', b"true", b"",
                                     b"Example of Ed25519 signing"])
def test_payload_not_an_object(ctx: Ctx, payload: bytes) -> None:
    assert_refused(ctx, ctx.forger.token(claims=payload))


@pytest.mark.parametrize("part", ["header", "payload"])
def test_invalid_utf8(ctx: Ctx, part: str) -> None:
    f = ctx.forger
    if part == "header":
        header = jbytes(f.header()).replace(b'"at+jwt"', b'"at+jwt\xc0\xaf"')
        assert b"\xc0\xaf" in header
        assert_refused(ctx, f.token(header=header))
    else:
        payload = jbytes(f.claims(scope="SCOPE")).replace(b"SCOPE", b"\xc0\xaf")
        assert b"\xc0\xaf" in payload
        assert_refused(ctx, f.token(claims=payload))


@pytest.mark.parametrize("part", ["header", "payload"])
def test_truncated_json(ctx: Ctx, part: str) -> None:
    f = ctx.forger
    if part == "header":
        assert_refused(ctx, f.token(header=jbytes(f.header())[:-1]))
    else:
        assert_refused(ctx, f.token(claims=jbytes(f.claims())[:-1]))


@pytest.mark.parametrize("form", ["flattened", "general"])
def test_jws_json_serialization_as_bearer(ctx: Ctx, form: str) -> None:
    head, payload, sig = ctx.forger.token().split(".")
    if form == "flattened":
        body = {"payload": payload, "protected": head, "signature": sig}
    else:
        body = {"payload": payload, "signatures": [{"protected": head, "signature": sig}]}
    assert_refused(ctx, json.dumps(body, separators=(",", ":")))


def _object(pairs: list[tuple[str, Any]]) -> bytes:
    return ("{" + ",".join(f"{json.dumps(k)}:{json.dumps(v, separators=(',', ':'))}"
                           for k, v in pairs) + "}").encode()


def test_duplicate_header_member_alg(ctx: Ctx) -> None:
    """``{"alg":"none","alg":"EdDSA",…}`` validly signed: a last-wins parser would accept."""
    f = ctx.forger
    header = _object([("alg", "none"), ("alg", "EdDSA"), ("kid", RFC8037_KID),
                      ("typ", "at+jwt")])
    assert_refused(ctx, f.token(header=header))


def test_duplicate_header_member_kid(ctx: Ctx) -> None:
    f = ctx.forger
    header = _object([("alg", "EdDSA"), ("kid", "../../dev/null"), ("kid", RFC8037_KID),
                      ("typ", "at+jwt")])
    assert_refused(ctx, f.token(header=header))


@pytest.mark.parametrize("claim", ["sub", "aud", "exp"])
def test_duplicate_claim(ctx: Ctx, claim: str) -> None:
    """The good value comes last, so a last-wins parser would accept."""
    f = ctx.forger
    claims = f.claims()
    decoy = {"sub": ctx.admin_id, "aud": "https://other.example.test", "exp": 1}[claim]
    pairs = [(claim, decoy), *claims.items()]
    assert_refused(ctx, f.token(claims=_object(pairs)))


def test_non_canonical_trailing_bits_of_a_revoked_token(ctx: Ctx) -> None:
    """JWT-19: one token has several textual forms (base64url's spare bits in the last
    character); revocation is keyed by ``jti``, so every form stays revoked."""
    f = ctx.forger
    token = f.token()
    head, payload, sig = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    idx = alphabet.index(sig[-1])
    variant = f"{head}.{payload}.{sig[:-1]}{alphabet[idx ^ 1]}"  # 86 chars: 4 spare bits
    assert b64u_decode(variant.split(".")[2]) == b64u_decode(sig)
    assert_accepted(ctx, token)
    r = ctx.http.post("/auth/revoke", data={"token": token})
    assert r.status_code == 200, r.text
    assert_refused(ctx, token)
    assert_refused(ctx, variant)


# -- JWT-15: size and complexity -----------------------------------------------------------

def test_authorization_header_16kib(ctx: Ctx) -> None:
    f = ctx.forger
    token = f.token(claims=f.claims(pad="x" * 12_000))
    assert len(token) >= 16_000
    started = time.monotonic()
    r = ctx.http.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert time.monotonic() - started < FAST
    assert r.status_code in (401, 413, 431), r.text
    if r.status_code == 401:
        assert r.content == ctx.refusal_body


def test_token_1mib(ctx: Ctx) -> None:
    f = ctx.forger
    token = f.token(claims=f.claims(pad="x" * 800_000))
    assert len(token) >= 1_000_000
    started = time.monotonic()
    try:
        r = ctx.http.get("/auth/me", headers={"Authorization": f"Bearer {token}"},
                      timeout=10)
    except httpx.RemoteProtocolError:
        pytest.fail("the server dropped the connection instead of answering 401/413/431")
    assert time.monotonic() - started < FAST
    assert r.status_code in (401, 413, 431), r.text
    assert_accepted(ctx, f.token())  # and it still serves


@pytest.mark.parametrize("depth", [100, 1_000, 2_500])
def test_deeply_nested_payload(ctx: Ctx, depth: int) -> None:
    f = ctx.forger
    claims = jbytes(f.claims(x="NEST")).replace(b'"NEST"', b"[" * depth + b"]" * depth)
    assert_refused(ctx, f.token(claims=claims))


def test_deeply_nested_header(ctx: Ctx) -> None:
    f = ctx.forger
    header = jbytes(f.header(x="NEST")).replace(b'"NEST"', b"{\"a\":" * 1000 + b"1" +
                                                b"}" * 1000)
    assert_refused(ctx, f.token(header=header))


def test_nesting_past_the_header_limit_is_431(ctx: Ctx) -> None:
    """10,000 nested arrays make a 27 KiB token: refused before any parsing."""
    f = ctx.forger
    claims = jbytes(f.claims(x="NEST")).replace(b'"NEST"', b"[" * 10_000 + b"]" * 10_000)
    r = ctx.http.get("/auth/me", headers={"Authorization": f"Bearer {f.token(claims=claims)}"})
    assert r.status_code == 431 and r.json()["error"] == "headers_too_large"


# -- JWT-17: only the Authorization header -------------------------------------------------

def test_token_in_query_string_is_ignored(ctx: Ctx) -> None:
    r = ctx.http.get("/auth/me", params={"access_token": ctx.issued_access})
    assert r.status_code == 401


def test_revoke_token_with_huge_integer_exp(ctx: Ctx) -> None:
    f = ctx.forger
    token = f.token(claims=f.claims(exp=10**400))
    r = ctx.http.post("/auth/revoke", data={"token": token})
    assert r.status_code == 200, r.text
    logout = ctx.http.post("/auth/logout", headers={"Authorization": f"Bearer {token}"})
    # exp beyond any real time is not "never expires": the token was never valid.
    assert logout.status_code == 401, logout.text
    assert logout.json()["error"] == "invalid_token", logout.text


def test_server_survived(ctx: Ctx) -> None:
    """After all of the above: no crash logged, and the server still serves."""
    assert_accepted(ctx, ctx.forger.token())
    assert "unhandled error on GET" not in ctx.server.log()


# -- JWE (TOKEN_ENCRYPTION): nested tokens and the known JWE attacks -------------------------
#
# A second server, with TOKEN_ENCRYPTION=true and the same RFC 8037 signing key: the tests
# hold its exported decryption key, so they can build JWEs that differ from an accepted one
# in exactly one way. Every refusal is the same 401 as any refused token.

JWE_ALGS = ["ECDH-ES+A256KW", "A256GCM"]


@dataclass
class JweCtx:
    ctx: Ctx  # .server, .http and .refusal_body of the encrypting server
    key: Any  # joserfc ECKey: the server's decryption key, as exported
    kid: str
    issued: str

    def wrap(self, inner: str | bytes, header: dict[str, Any] | None = None,
             key: Any = None, algorithms: list[str] | None = None) -> str:
        from joserfc import jwe

        protected = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty": "JWT", "kid": self.kid,
                     **(header or {})}
        plaintext = inner.encode() if isinstance(inner, str) else inner
        return jwe.encrypt_compact(protected, plaintext, self.key if key is None else key,
                                   algorithms=algorithms or JWE_ALGS)

    def wrap_with(self, inner: str, **header: Any) -> str:
        """``wrap`` with these header values; where joserfc will not write them (a kid that
        is not a string), a correct JWE's header is edited instead."""
        from joserfc.errors import JoseError

        try:
            return self.wrap(inner, header=header)
        except (JoseError, ValueError, TypeError):
            parts = _jwe_parts(self.wrap(inner))
            edited = {**json.loads(b64u_decode(parts[0])), **header}
            parts[0] = b64u(jbytes({k: v for k, v in edited.items() if v is not DROP}))
            return ".".join(parts)


@pytest.fixture(scope="module")
def jctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JweCtx]:
    from joserfc.jwk import ECKey

    work = tmp_path_factory.mktemp("advisories-jwe")
    pem = write_rfc8037_pem(work / "rfc8037-ed25519.pem")
    srv = Server(work, {"signing_key_file": str(pem), "issuer": ISSUER, "audience": AUDIENCE,
                        "token_encryption": True}).start()
    try:
        username, password = srv.new_user("jwe-victim")
        r = httpx.post(f"{srv.url}/auth/token", data={"grant_type": "password",
                                                      "username": username,
                                                      "password": password})
        assert r.status_code == 200, r.text
        issued = r.json()["access_token"]
        me = httpx.get(f"{srv.url}/auth/me", headers={"Authorization": f"Bearer {issued}"})
        assert me.status_code == 200, me.text
        garbage = httpx.get(f"{srv.url}/auth/me",
                            headers={"Authorization": "Bearer not-a-token"})
        exported = srv.cli("keys", "export-decryption-key")
        assert exported.returncode == 0, exported.stderr
        jwk = json.loads(exported.stdout)
        forger = Forger(key=rfc8037_private_key(), kid=RFC8037_KID, issuer=ISSUER,
                        audience=AUDIENCE, sub=me.json()["id"],
                        clock=lambda: time.time() + srv.offset)
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            ctx = Ctx(server=srv, forger=forger, user_id=me.json()["id"], admin_id="",
                      issued_access=issued, issued_refresh=r.json()["refresh_token"],
                      refusal_body=garbage.content, jwks_text="", http=http)
            yield JweCtx(ctx=ctx, key=ECKey.import_key(jwk), kid=jwk["kid"], issued=issued)
    finally:
        srv.stop()


def _jwe_parts(token: str) -> list[str]:
    parts = token.split(".")
    assert len(parts) == 5
    return parts


def _flip_last(segment: str) -> str:
    raw = bytearray(b64u_decode(segment))
    raw[-1] ^= 0x01
    return b64u(bytes(raw))


def test_jwe_positive_control_issued_and_forged(jctx: JweCtx) -> None:
    """The issued token and one the test wraps itself (server-signed inside) are accepted:
    so every refusal below is caused by the one defect each test adds."""
    assert_accepted(jctx.ctx, jctx.issued)
    assert_accepted(jctx.ctx, jctx.wrap(jctx.ctx.forger.token()))


@pytest.mark.parametrize("part", [1, 2, 3, 4], ids=["encrypted-key", "iv", "ciphertext", "tag"])
def test_jwe_segment_tampered(jctx: JweCtx, part: int) -> None:
    parts = _jwe_parts(jctx.wrap(jctx.ctx.forger.token()))
    parts[part] = _flip_last(parts[part])
    assert_refused(jctx.ctx, ".".join(parts))


def test_jwe_issued_token_tampered(jctx: JweCtx) -> None:
    parts = _jwe_parts(jctx.issued)
    parts[3] = _flip_last(parts[3])
    assert_refused(jctx.ctx, ".".join(parts))


def test_jwe_tag_stripped_or_truncated(jctx: JweCtx) -> None:
    parts = _jwe_parts(jctx.wrap(jctx.ctx.forger.token()))
    assert_refused(jctx.ctx, ".".join([*parts[:4], ""]))
    assert_refused(jctx.ctx, ".".join([*parts[:4], b64u(b64u_decode(parts[4])[:8])]))


def test_jwe_header_tampered(jctx: JweCtx) -> None:
    """The header is the AAD: the same members re-encoded (another order) fail the tag."""
    parts = _jwe_parts(jctx.wrap(jctx.ctx.forger.token()))
    header = json.loads(b64u_decode(parts[0]))
    parts[0] = b64u(jbytes(dict(reversed(list(header.items())))))
    assert_refused(jctx.ctx, ".".join(parts))


@pytest.mark.parametrize("kid", ["unknown-kid", RFC8037_KID, "", None, 1],
                         ids=["unknown", "the-signing-key", "empty", "null", "int"])
def test_jwe_kid_refused(jctx: JweCtx, kid: Any) -> None:
    assert_refused(jctx.ctx, jctx.wrap_with(jctx.ctx.forger.token(), kid=kid))


def test_jwe_kid_swapped_in_an_issued_token(jctx: JweCtx) -> None:
    parts = _jwe_parts(jctx.issued)
    header = json.loads(b64u_decode(parts[0]))
    parts[0] = b64u(jbytes({**header, "kid": header["kid"][::-1]}))
    assert_refused(jctx.ctx, ".".join(parts))


def test_jwe_to_an_attacker_key_with_the_server_kid(jctx: JweCtx) -> None:
    from joserfc.jwk import ECKey

    attacker = ECKey.generate_key("P-256")
    assert_refused(jctx.ctx, jctx.wrap(jctx.ctx.forger.token(), key=attacker))


def test_jwe_alg_dir(jctx: JweCtx) -> None:
    """``dir``: a content key the sender chooses (and no key agreement at all)."""
    from joserfc.jwk import OctKey

    token = jctx.wrap(jctx.ctx.forger.token(), header={"alg": "dir"},
                      key=OctKey.generate_key(256), algorithms=["dir", "A256GCM"])
    assert_refused(jctx.ctx, token)


def test_jwe_alg_rsa1_5(jctx: JweCtx) -> None:
    """RSA1_5: PKCS#1 v1.5 padding (Bleichenbacher's oracle) is never tried."""
    import warnings

    from joserfc.jwk import RSAKey

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc warns about RSA1_5 itself
        token = jctx.wrap(jctx.ctx.forger.token(), header={"alg": "RSA1_5"},
                          key=RSAKey.generate_key(2048), algorithms=["RSA1_5", "A256GCM"])
    assert_refused(jctx.ctx, token)


@pytest.mark.parametrize("alg", ["ECDH-ES", "ECDH-ES+A128KW", "A256KW", "RSA-OAEP", "none",
                                 "ecdh-es+a256kw"])
def test_jwe_other_alg_in_header(jctx: JweCtx, alg: str) -> None:
    parts = _jwe_parts(jctx.wrap(jctx.ctx.forger.token()))
    header = json.loads(b64u_decode(parts[0]))
    parts[0] = b64u(jbytes({**header, "alg": alg}))
    assert_refused(jctx.ctx, ".".join(parts))


def test_jwe_direct_key_agreement_ecdh_es(jctx: JweCtx) -> None:
    token = jctx.wrap(jctx.ctx.forger.token(), header={"alg": "ECDH-ES"},
                      algorithms=["ECDH-ES", "A256GCM"])
    assert_refused(jctx.ctx, token)


@pytest.mark.parametrize("enc", ["A128GCM", "A256CBC-HS512", "A128CBC-HS256"])
def test_jwe_other_enc(jctx: JweCtx, enc: str) -> None:
    token = jctx.wrap(jctx.ctx.forger.token(), header={"enc": enc},
                      algorithms=["ECDH-ES+A256KW", enc])
    assert_refused(jctx.ctx, token)


def test_jwe_zip_def(jctx: JweCtx) -> None:
    """Compression before encryption leaks the plaintext's length (CRIME-like oracles):
    a correctly encrypted, compressed token to the server's key is refused."""
    token = jctx.wrap(jctx.ctx.forger.token(), header={"zip": "DEF"},
                      algorithms=[*JWE_ALGS, "DEF"])
    assert_refused(jctx.ctx, token)


@pytest.mark.parametrize("extra", [{"crit": ["exp"]}, {"jku": "https://evil.example/k"},
                                   {"apu": "QWxpY2U"}, {"typ": "at+jwt"}, {"x5u": "x"}],
                         ids=["crit", "jku", "apu", "typ", "x5u"])
def test_jwe_extra_header_member(jctx: JweCtx, extra: dict[str, Any]) -> None:
    parts = _jwe_parts(jctx.wrap(jctx.ctx.forger.token()))
    header = json.loads(b64u_decode(parts[0]))
    parts[0] = b64u(jbytes({**header, **extra}))
    assert_refused(jctx.ctx, ".".join(parts))


@pytest.mark.parametrize("cty", ["jwt", "at+jwt", "JOSE", None, DROP],
                         ids=["jwt", "at+jwt", "JOSE", "null", "missing"])
def test_jwe_cty_not_jwt(jctx: JweCtx, cty: Any) -> None:
    assert_refused(jctx.ctx, jctx.wrap_with(jctx.ctx.forger.token(), cty=cty))


def test_jwe_invalid_curve_epk(jctx: JweCtx) -> None:
    """An ephemeral key that is not a point of P-256 (the invalid-curve attack recovers the
    private key from such points): refused, never used in a key agreement."""
    parts = _jwe_parts(jctx.wrap(jctx.ctx.forger.token()))
    header = json.loads(b64u_decode(parts[0]))
    y = int.from_bytes(b64u_decode(header["epk"]["y"]), "big")
    off_curve = {**header["epk"], "y": b64u(((y + 1) % 2**256).to_bytes(32, "big"))}
    for epk in (off_curve, {**header["epk"], "x": b64u(bytes(32)), "y": b64u(bytes(32))},
                {**header["epk"], "crv": "P-384"}, {"kty": "OKP", "crv": "X25519",
                                                    "x": header["epk"]["x"]},
                {**header["epk"], "d": b64u(bytes(31) + b"\x01")}, "not-a-key"):
        parts[0] = b64u(jbytes({**header, "epk": epk}))
        assert_refused(jctx.ctx, ".".join(parts))


def test_jwe_wrapping_an_unsigned_jwt(jctx: JweCtx) -> None:
    f = jctx.ctx.forger
    assert_refused(jctx.ctx, jctx.wrap(compact(f.header(alg="none"), f.claims(), no_signer)))


def test_jwe_wrapping_a_jwt_signed_by_another_key(jctx: JweCtx) -> None:
    f = jctx.ctx.forger
    attacker = ed25519.Ed25519PrivateKey.generate()
    assert_refused(jctx.ctx, jctx.wrap(f.token(sign=ed_signer(attacker))))


def test_jwe_wrapping_bare_claims(jctx: JweCtx) -> None:
    """The claims JSON itself as the plaintext: encryption is not authentication."""
    assert_refused(jctx.ctx, jctx.wrap(jbytes(jctx.ctx.forger.claims())))


def test_jwe_wrapping_a_jwe(jctx: JweCtx) -> None:
    assert_refused(jctx.ctx, jctx.wrap(jctx.wrap(jctx.ctx.forger.token())))


def test_jwe_wrapping_an_expired_or_foreign_audience_token(jctx: JweCtx) -> None:
    f = jctx.ctx.forger
    now = int(jctx.ctx.server_now())
    assert_refused(jctx.ctx, jctx.wrap(f.token(claims=f.claims(iat=now - 900, exp=now - 60))))
    assert_refused(jctx.ctx, jctx.wrap(f.token(claims=f.claims(aud="someone-else"))))


@pytest.mark.parametrize("plaintext", [b"", b"\xff\xfe", b"a.b.c", b"x" * 5000],
                         ids=["empty", "not-utf8", "three-dots", "large"])
def test_jwe_wrapping_garbage(jctx: JweCtx, plaintext: bytes) -> None:
    assert_refused(jctx.ctx, jctx.wrap(plaintext))


def test_jwe_json_serialization_as_bearer(jctx: JweCtx) -> None:
    header, ek, iv, ct, tag = _jwe_parts(jctx.wrap(jctx.ctx.forger.token()))
    flattened = json.dumps({"protected": header, "encrypted_key": ek, "iv": iv,
                            "ciphertext": ct, "tag": tag})
    assert_refused(jctx.ctx, b64u(flattened.encode()))


def test_jwe_segment_count_and_padding(jctx: JweCtx) -> None:
    parts = _jwe_parts(jctx.wrap(jctx.ctx.forger.token()))
    assert_refused(jctx.ctx, ".".join([*parts, parts[4]]))
    assert_refused(jctx.ctx, ".".join(parts[:4]))
    assert_refused(jctx.ctx, ".".join([parts[0] + "=", *parts[1:]]))


def test_jwe_revoked_token_stays_refused(jctx: JweCtx) -> None:
    token = jctx.wrap(jctx.ctx.forger.token())
    assert_accepted(jctx.ctx, token)
    assert jctx.ctx.http.post("/auth/revoke", data={"token": token}).status_code == 200
    assert_refused(jctx.ctx, token)
    # the same signed token in a fresh JWE is the same jti: still revoked
    inner = jctx.ctx.forger.token()
    first = jctx.wrap(inner)
    assert jctx.ctx.http.post("/auth/revoke", data={"token": first}).status_code == 200
    assert_refused(jctx.ctx, jctx.wrap(inner))


def test_jwe_server_survived(jctx: JweCtx) -> None:
    assert_accepted(jctx.ctx, jctx.wrap(jctx.ctx.forger.token()))
    assert "unhandled error on GET" not in jctx.ctx.server.log()
    assert "Traceback" not in jctx.ctx.server.log()
