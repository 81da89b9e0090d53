"""``TOKEN_ENCRYPTION=true``, black-box over HTTP: every access token is a nested JWT (the
usual signed token inside a compact JWE), and every place a token is checked takes it like
a signed one: ``/auth/me``, ``/auth/verify``, refresh, revoke, logout, token cookies. The
encryption keys: never in the JWKS, rotated with overlap, exported for resource servers.

The JWE attack cases are in tests/test_advisories.py; other JOSE libraries decrypting the
tokens in tests/interop/test_interop.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Server
from tests.tokens.forge import b64u_decode

JWE_HEADER = {"alg", "enc", "cty", "kid", "epk"}


@pytest.fixture(scope="module")
def enc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("enc"), {"token_encryption": True}).start()
    yield srv
    srv.stop()


def grant(srv: Server, **extra: Any) -> dict[str, Any]:
    username, password = srv.new_user("enc", roles=("reports",))
    r = httpx.post(f"{srv.url}/auth/token", data={"grant_type": "password",
                                                  "username": username,
                                                  "password": password, **extra})
    assert r.status_code == 200, r.text
    return {**r.json(), "username": username}


def me(srv: Server, token: str) -> httpx.Response:
    return httpx.get(f"{srv.url}/auth/me", headers={"Authorization": f"Bearer {token}"})


def jwe_header(token: str) -> dict[str, Any]:
    header: dict[str, Any] = json.loads(b64u_decode(token.split(".")[0]))
    return header


def encryption_keys(srv: Server) -> dict[str, str]:
    """``keys list``: {kid: state} of the encryption keys."""
    done = srv.cli("keys", "list")
    assert done.returncode == 0, done.stderr
    return {line.split("\t")[0]: line.split("\t")[2] for line in done.stdout.splitlines()
            if line.split("\t")[1] == "ECDH-ES+A256KW"}


def test_token_is_a_compact_jwe_with_the_contract_header(enc: Server) -> None:
    token = grant(enc)["access_token"]
    parts = token.split(".")
    assert len(parts) == 5 and all(parts), token
    header = jwe_header(token)
    assert set(header) == JWE_HEADER
    assert (header["alg"], header["enc"], header["cty"]) == ("ECDH-ES+A256KW", "A256GCM",
                                                             "JWT")
    assert header["epk"]["kty"] == "EC" and header["epk"]["crv"] == "P-256"
    assert encryption_keys(enc) == {header["kid"]: "encrypting"}


def test_claims_are_not_readable_from_the_token(enc: Server) -> None:
    pair = grant(enc)
    user_id = me(enc, pair["access_token"]).json()["id"]
    for segment in pair["access_token"].split("."):
        raw = b64u_decode(segment)
        for secret in (user_id, pair["username"], "reports"):
            assert secret.encode() not in raw


def test_jwks_publishes_only_signing_keys(enc: Server) -> None:
    kid = jwe_header(grant(enc)["access_token"])["kid"]
    keys = httpx.get(f"{enc.url}/.well-known/jwks.json").json()["keys"]
    assert keys and all(k["use"] == "sig" and k["kid"] != kid for k in keys)
    assert all(k["alg"] == "EdDSA" for k in keys)


def test_me_and_verify_with_an_encrypted_token(enc: Server) -> None:
    pair = grant(enc)
    for _ in range(2):  # the first check decrypts, the second is answered from the cache
        r = me(enc, pair["access_token"])
        assert r.status_code == 200, r.text
        assert r.json()["username"] == pair["username"] and r.json()["auth"] == "token"
        assert r.json()["scopes"] == ["reports"]
    v = httpx.get(f"{enc.url}/auth/verify",
                  headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert v.status_code == 200, v.text
    assert v.headers["x-auth-username"] == pair["username"]
    assert v.headers["x-auth-roles"] == "reports"


def test_refresh_gives_a_new_encrypted_token(enc: Server) -> None:
    pair = grant(enc)
    r = httpx.post(f"{enc.url}/auth/token", data={"grant_type": "refresh_token",
                                                  "refresh_token": pair["refresh_token"]})
    assert r.status_code == 200, r.text
    new = r.json()["access_token"]
    assert new.count(".") == 4 and new != pair["access_token"]
    assert me(enc, new).json()["username"] == pair["username"]


def test_revoke_an_encrypted_access_token(enc: Server) -> None:
    pair = grant(enc)
    assert me(enc, pair["access_token"]).status_code == 200  # cached now
    r = httpx.post(f"{enc.url}/auth/revoke", data={"token": pair["access_token"]})
    assert r.status_code == 200, r.text
    refused = me(enc, pair["access_token"])
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_revoke_the_refresh_token_ends_its_encrypted_access_tokens(enc: Server) -> None:
    pair = grant(enc)
    assert me(enc, pair["access_token"]).status_code == 200
    r = httpx.post(f"{enc.url}/auth/revoke", data={"token": pair["refresh_token"]})
    assert r.status_code == 200, r.text
    assert me(enc, pair["access_token"]).status_code == 401


def test_logout_with_an_encrypted_bearer_token(enc: Server) -> None:
    pair = grant(enc)
    auth = {"Authorization": f"Bearer {pair['access_token']}"}
    assert httpx.post(f"{enc.url}/auth/logout", headers=auth).status_code == 204
    assert me(enc, pair["access_token"]).status_code == 401
    again = httpx.post(f"{enc.url}/auth/token", data={"grant_type": "refresh_token",
                                                      "refresh_token": pair["refresh_token"]})
    assert again.status_code == 400


def test_logout_everywhere_with_an_encrypted_bearer_token(enc: Server) -> None:
    pair = grant(enc)
    auth = {"Authorization": f"Bearer {pair['access_token']}"}
    assert httpx.delete(f"{enc.url}/auth/sessions", headers=auth).status_code == 204
    assert me(enc, pair["access_token"]).status_code == 401


def test_token_cookie_holds_the_encrypted_token(enc: Server) -> None:
    username, password = enc.new_user("cookie")
    with enc.client() as client:
        r = client.token(username, password, cookie="1")
        assert r.status_code == 200, r.text
        assert "access_token" not in r.json()
        assert client.jar[client.access_cookie].count(".") == 4
        got = client.get("/auth/me")
        assert got.status_code == 200, got.text
        assert got.json()["auth"] == "token" and got.json()["username"] == username


def test_export_decryption_key_prints_the_private_jwk_with_a_warning(enc: Server) -> None:
    kid = jwe_header(grant(enc)["access_token"])["kid"]
    done = enc.cli("keys", "export-decryption-key")
    assert done.returncode == 0, done.stderr
    jwk = json.loads(done.stdout)
    assert jwk["kid"] == kid and jwk["alg"] == "ECDH-ES+A256KW" and jwk["use"] == "enc"
    assert {"kty", "crv", "x", "y", "d"} <= set(jwk)
    assert "PRIVATE key" in done.stderr and jwk["d"] not in done.stderr
    by_kid = enc.cli("keys", "export-decryption-key", "--kid", kid)
    assert json.loads(by_kid.stdout) == jwk
    unknown = enc.cli("keys", "export-decryption-key", "--kid", "no-such-kid")
    assert unknown.returncode != 0 and unknown.stdout == ""
    assert unknown.stderr.count("\n") == 1 and "no-such-kid" in unknown.stderr


def test_rotation_with_overlap(tmp_path_factory: pytest.TempPathFactory) -> None:
    srv = Server(tmp_path_factory.mktemp("enc-rotate"), {"token_encryption": True,
                                                        "access_token_ttl": 300}).start()
    try:
        old = grant(srv)["access_token"]
        old_kid = jwe_header(old)["kid"]
        done = srv.cli("keys", "rotate", "--encryption", "--publish-ahead", "0")
        assert done.returncode == 0, done.stderr
        new_kid = done.stdout.split()[3]
        assert encryption_keys(srv) == {old_kid: "decrypting", new_kid: "encrypting"}
        signing = [k["kid"] for k in httpx.get(f"{srv.url}/.well-known/jwks.json").json()[
            "keys"]]
        srv.restart()  # (a running server loads the new key within 30 s)
        new = grant(srv)["access_token"]
        assert jwe_header(new)["kid"] == new_kid
        # the signing key did not rotate with it
        assert [k["kid"] for k in httpx.get(f"{srv.url}/.well-known/jwks.json").json()[
            "keys"]] == signing
        assert me(srv, old).status_code == 200, "a token to the old key works until it expires"
        assert me(srv, new).status_code == 200
        srv.advance(300 + 61)  # past the old key's last token: the key is dropped
        srv.restart()
        assert encryption_keys(srv) == {new_kid: "encrypting"}
        assert me(srv, old).status_code == 401
    finally:
        srv.stop()


def test_encryption_off_reads_tokens_issued_while_it_was_on(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Turning TOKEN_ENCRYPTION off does not log out the tokens already issued."""
    srv = Server(tmp_path_factory.mktemp("enc-off"), {"token_encryption": True}).start()
    try:
        encrypted = grant(srv)["access_token"]
        srv.stop()
        srv.settings["token_encryption"] = False
        srv.start()
        plain = grant(srv)["access_token"]
        assert plain.count(".") == 2
        assert me(srv, encrypted).status_code == 200
        assert me(srv, plain).status_code == 200
    finally:
        srv.stop()
