"""Issued tokens verify with standard JOSE libraries from the JWKS alone (contract §4):
PyJWT's ``PyJWKClient`` and Node's ``jose`` (panva). And the seed article's client style
(``Authorization: 'Bearer ' + token`` from JavaScript) works against ``/auth/me``.

``jose`` is installed with npm once into a temporary directory and cached under
``/tmp/authgate-node-jose`` (``AUTHGATE_NODE_JOSE_DIR`` overrides). When node or the
install is unavailable the Node tests skip, except in CI (``CI`` truthy) where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import Server, in_ci
from tests.tokens.forge import b64u, b64u_decode, segments

JOSE_MAJOR = "6"
NODE = shutil.which("node") or "/usr/bin/node"
NPM = shutil.which("npm") or "/usr/bin/npm"
CACHE = Path(os.environ.get("AUTHGATE_NODE_JOSE_DIR", "/tmp/authgate-node-jose"))


def _unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


def _installed(directory: Path) -> bool:
    return (directory / "node_modules" / "jose" / "package.json").is_file()


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """A ``node_modules`` holding ``jose``: from the cache, else installed into a fresh
    temporary directory that then becomes the cache."""
    if not Path(NODE).exists():
        _unavailable("node is not installed")
    if _installed(CACHE):
        return CACHE / "node_modules"
    if not Path(NPM).exists():
        _unavailable("npm is not installed")
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="authgate-node-jose-", dir=CACHE.parent))
    (work / "package.json").write_text(json.dumps({"name": "authgate-interop", "private": True,
                                                   "type": "module"}))
    try:
        done = subprocess.run([NPM, "install", "--no-audit", "--no-fund", "--loglevel=error",
                               f"jose@{JOSE_MAJOR}"], cwd=work, capture_output=True,
                              text=True, timeout=180)
    except (OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(work, ignore_errors=True)
        _unavailable(f"npm install jose failed: {exc}")
        raise
    if done.returncode != 0 or not _installed(work):
        shutil.rmtree(work, ignore_errors=True)
        _unavailable(f"npm install jose failed: {done.stderr.strip()[-500:]}")
    try:
        work.rename(CACHE)  # atomic; loses harmlessly to a concurrent installer
    except OSError:
        shutil.rmtree(work, ignore_errors=True)
    if not _installed(CACHE):
        _unavailable(f"jose cache at {CACHE} is unusable")
    return CACHE / "node_modules"


@pytest.fixture
def node(node_modules: Path, tmp_path: Path) -> Iterator[Any]:
    """``node(script, *args)`` runs an ES module that can ``import 'jose'``; returns its
    JSON output."""
    (tmp_path / "node_modules").symlink_to(node_modules, target_is_directory=True)

    def run(script: str, *args: str) -> Any:
        path = tmp_path / "script.mjs"
        path.write_text(script)
        done = subprocess.run([NODE, str(path), *args], capture_output=True, text=True,
                              timeout=60, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    yield run


@pytest.fixture(scope="module")
def tokens(server: Server) -> dict[str, Any]:
    username, password = server.new_user("interop", roles=("reports",))
    r = httpx.post(f"{server.url}/auth/token", data={"grant_type": "password",
                                                     "username": username,
                                                     "password": password})
    assert r.status_code == 200, r.text
    me = httpx.get(f"{server.url}/auth/me",
                   headers={"Authorization": f"Bearer {r.json()['access_token']}"})
    return {"access": r.json()["access_token"], "username": username, "id": me.json()["id"]}


def tampered(token: str) -> str:
    head, payload, sig = token.split(".")
    claims = json.loads(b64u_decode(payload))
    claims["roles"] = ["admin"]
    return f"{head}.{b64u(json.dumps(claims).encode())}.{sig}"


# -- PyJWT ------------------------------------------------------------------------------------

def test_pyjwt_pyjwkclient(server: Server, tokens: dict[str, Any]) -> None:
    token = tokens["access"]
    client = jwt.PyJWKClient(server.url + "/.well-known/jwks.json")
    key = client.get_signing_key_from_jwt(token)
    assert key.key_id == segments(token)[0]["kid"]
    claims = jwt.decode(token, key.key, algorithms=["EdDSA"], audience="authgate",
                        issuer=server.url, options={"require": ["exp", "iat", "sub", "jti"]})
    assert claims["sub"] == tokens["id"]
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(tampered(token), key.key, algorithms=["EdDSA"], audience="authgate",
                   issuer=server.url)
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(token, key.key, algorithms=["EdDSA"], audience="someone-else",
                   issuer=server.url)


# -- Node jose --------------------------------------------------------------------------------

JOSE_VERIFY = """
import * as jose from 'jose';
const [jwksUrl, token, issuer, audience] = process.argv.slice(2);
const JWKS = jose.createRemoteJWKSet(new URL(jwksUrl));
try {
  const { payload, protectedHeader } = await jose.jwtVerify(token, JWKS, {
    issuer, audience, typ: 'at+jwt', algorithms: ['EdDSA'],
  });
  console.log(JSON.stringify({ ok: true, payload, protectedHeader }));
} catch (err) {
  console.log(JSON.stringify({ ok: false, code: err.code || String(err) }));
}
"""


def test_node_jose_verifies_from_jwks(server: Server, tokens: dict[str, Any], node: Any) -> None:
    jwks_url = server.url + "/.well-known/jwks.json"
    out = node(JOSE_VERIFY, jwks_url, tokens["access"], server.url, "authgate")
    assert out["ok"] is True, out
    assert out["payload"]["sub"] == tokens["id"]
    assert out["payload"]["roles"] == ["reports"]
    assert out["protectedHeader"]["alg"] == "EdDSA"
    assert out["protectedHeader"]["typ"] == "at+jwt"
    # and jose really checks: a tampered token and a wrong audience fail there too
    bad = node(JOSE_VERIFY, jwks_url, tampered(tokens["access"]), server.url, "authgate")
    assert bad == {"ok": False, "code": "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"}
    wrong_aud = node(JOSE_VERIFY, jwks_url, tokens["access"], server.url, "other")
    assert wrong_aud == {"ok": False, "code": "ERR_JWT_CLAIM_VALIDATION_FAILED"}


# -- the seed article's client style ----------------------------------------------------------

AXIOS_STYLE = """
// The seed article: axios.get(url, { headers: { Authorization: 'Bearer ' + token } }),
// here with Node's built-in fetch and the same header construction.
const [base, token] = process.argv.slice(2);
const res = await fetch(base + '/auth/me', { headers: { Authorization: 'Bearer ' + token } });
console.log(JSON.stringify({ status: res.status, body: await res.json() }));
"""


def test_seed_article_bearer_header_from_javascript(server: Server, tokens: dict[str, Any],
                                                    tmp_path: Path) -> None:
    if not Path(NODE).exists():
        _unavailable("node is not installed")
    script = tmp_path / "axios-style.mjs"
    script.write_text(AXIOS_STYLE)

    def call(token: str) -> Any:
        done = subprocess.run([NODE, str(script), server.url, token], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    ok = call(tokens["access"])
    assert ok["status"] == 200, ok
    assert ok["body"]["username"] == tokens["username"]
    assert ok["body"]["auth"] == "token"
    refused = call(tampered(tokens["access"]))
    assert refused["status"] == 401
