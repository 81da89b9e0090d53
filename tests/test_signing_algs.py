"""SIGNING_ALG: EdDSA (default), ES256, RS256 and HS256 each issue tokens that verify, and
each key is bound to its one algorithm."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import pytest

from tests.conftest import AUTHGATE, Server, env_for

HS_SECRET = "k" * 16 + "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "RS256"])
def test_asymmetric_algorithms_verify_from_the_jwks(alg: str,
                                                    make_server: Callable[..., Server]) -> None:
    srv = make_server(signing_alg=alg)
    name, pw = srv.new_user("alg")
    token = srv.client().token(name, pw).json()["access_token"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == alg and header["typ"] == "at+jwt"
    jwks = httpx.get(f"{srv.url}/.well-known/jwks.json").json()["keys"]
    assert [k["alg"] for k in jwks] == [alg] and all("d" not in k for k in jwks)
    key = jwt.PyJWKClient(f"{srv.url}/.well-known/jwks.json").get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=[alg], audience="authgate")
    assert claims["sub"]
    assert httpx.get(f"{srv.url}/auth/me",
                     headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_hs256_needs_a_strong_secret_and_publishes_nothing(
        make_server: Callable[..., Server]) -> None:
    srv = make_server(signing_alg="HS256", hs256_secret=HS_SECRET)
    name, pw = srv.new_user("hs")
    token = srv.client().token(name, pw).json()["access_token"]
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert httpx.get(f"{srv.url}/.well-known/jwks.json").json() == {"keys": []}
    assert httpx.get(f"{srv.url}/auth/me",
                     headers={"Authorization": f"Bearer {token}"}).status_code == 200
    forged = jwt.encode({**jwt.decode(token, options={"verify_signature": False})},
                        "secret" * 6, algorithm="HS256",
                        headers={"kid": jwt.get_unverified_header(token)["kid"],
                                 "typ": "at+jwt"})
    assert httpx.get(f"{srv.url}/auth/me",
                     headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_weak_hs256_secret_refused_at_start(tmp_path: Path) -> None:
    env = env_for({"database_url": f"sqlite:///{tmp_path / 'x.db'}", "signing_alg": "HS256",
                   "hs256_secret": "secret"})
    done = subprocess.run([AUTHGATE, "serve", "--port", "0"], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode != 0
    assert "HS256" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
