"""What a new user hits in the first hour (issue 16): ``serve --port`` without PUBLIC_URL,
a PUBLIC_URL that is not where the server listens, Secure cookies over plain HTTP."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import jwt
import pytest

from tests.blackbox.support import one_line_error, register
from tests.conftest import AUTHGATE, Server, env_for, free_port

pytestmark = pytest.mark.subprocess  # `authgate serve`'s own start-up checks and warnings


def serve_without_public_url(tmp_path: Path, **settings: object) -> Server:
    srv = Server(tmp_path, dict(settings))
    srv.settings.pop("public_url")
    return srv.start()


def test_serve_port_without_public_url_derives_it(tmp_path: Path) -> None:
    srv = serve_without_public_url(tmp_path)
    try:
        username, password, _ = register(srv)
        with srv.client() as c:
            form = c.get("/login")
            token = re.search(r'name="form_token" value="([^"]+)"', form.text)
            assert token, form.text
            done = c.post("/login", headers={"Origin": srv.url}, data={
                "form_token": token.group(1), "username": username, "password": password})
            assert done.status_code == 303, done.text
            access = c.post("/auth/token", data={"grant_type": "password",
                                                 "username": username,
                                                 "password": password}).json()
        claims = jwt.decode(access["access_token"], options={"verify_signature": False})
        assert claims["iss"] == srv.url
        assert "WARNING" not in srv.log()
    finally:
        srv.stop()


def test_public_url_elsewhere_without_proxy_warns_once(tmp_path: Path) -> None:
    srv = Server(tmp_path, {"public_url": "http://127.0.0.1:1"}).start()
    try:
        warnings = [line for line in srv.log().splitlines() if "WARNING" in line]
        assert len(warnings) == 1, srv.log()
        assert "PUBLIC_URL is http://127.0.0.1:1" in warnings[0]
        assert srv.url in warnings[0]
    finally:
        srv.stop()


def test_public_url_behind_a_trusted_proxy_does_not_warn(tmp_path: Path) -> None:
    srv = Server(tmp_path, {"public_url": "https://auth.example.test",
                            "trusted_proxies": "127.0.0.1",
                            "smtp_url": "smtp://127.0.0.1:2525"}).start()
    try:
        assert "WARNING" not in srv.log()
    finally:
        srv.stop()


def test_a_public_server_without_smtp_warns_that_links_go_to_the_log(tmp_path: Path) -> None:
    """Without SMTP_URL the verification and reset links are logged: fine on a laptop, a
    silent failure for real users, so a server with a public PUBLIC_URL says so once."""
    srv = Server(tmp_path, {"public_url": "https://auth.example.test",
                            "trusted_proxies": "127.0.0.1"}).start()
    try:
        warnings = [line for line in srv.log().splitlines() if "WARNING" in line]
        assert len(warnings) == 1 and "SMTP_URL is not set" in warnings[0], srv.log()
    finally:
        srv.stop()


def test_secure_cookies_on_plain_http_refuse_to_start(tmp_path: Path) -> None:
    port = free_port()
    env = env_for({"database_url": f"sqlite:///{tmp_path / 'ag.db'}",
                   "public_url": "http://auth.example.test:8000"})
    done = subprocess.run([AUTHGATE, "serve", "--port", str(port)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    one_line_error(done.stderr)
    assert "https" in done.stderr.lower() and "AUTHGATE_COOKIE_SECURE=false" in done.stderr


def test_plain_http_development_with_cookie_secure_false_starts(tmp_path: Path) -> None:
    srv = Server(tmp_path, {"public_url": "http://devbox.example.test:8000",
                            "cookie_secure": False, "trusted_proxies": "127.0.0.1"}).start()
    srv.stop()


def test_server_openapi_declares_both_schemes_and_swagger_authorize_works(
        server: Server) -> None:
    with server.client() as c:
        schema = c.get("/openapi.json").json()
        schemes = schema["components"]["securitySchemes"]
        assert schemes["bearer"]["flows"]["password"]["tokenUrl"] == "/auth/token"
        assert schemes["session"] == {"type": "apiKey", "in": "cookie",
                                      "name": "__Host-authgate"}
        assert {"bearer": []} in schema["paths"]["/auth/me"]["get"]["security"]
        assert "security" not in schema["paths"]["/auth/token"]["post"]
        # What Swagger UI's Authorize sends, then what it sends with the token it got.
        username, password, _ = register(server)
        got = c.post("/auth/token", data={"grant_type": "password", "username": username,
                                          "password": password, "scope": "",
                                          "client_id": ""})
        assert got.status_code == 200, got.text
        me = c.get("/auth/me", headers={
            "Authorization": f"Bearer {got.json()['access_token']}"})
        assert me.status_code == 200 and me.json()["username"] == username


def _cli(tmp_path: Path, *args: str, **settings: object) -> subprocess.CompletedProcess[str]:
    env = env_for({"database_url": f"sqlite:///{tmp_path / 'cli.db'}", **settings})
    return subprocess.run([AUTHGATE, *args], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)


def test_keys_list_shows_exactly_one_signing_key_after_rotations(tmp_path: Path) -> None:
    for args in ([], ["--publish-ahead", "0"], [], ["--publish-ahead", "0"]):
        done = _cli(tmp_path, "keys", "rotate", *args)
        assert done.returncode == 0, done.stderr
        listed = _cli(tmp_path, "keys", "list")
        assert listed.returncode == 0, listed.stderr
        states = [line.split("\t")[2] for line in listed.stdout.splitlines()]
        assert states.count("signing") == 1, listed.stdout
        assert set(states) <= {"signing", "pending", "verifying"}, listed.stdout


def test_bad_value_in_the_config_file_is_named_by_its_key_and_file(tmp_path: Path) -> None:
    config = tmp_path / "authgate.toml"
    config.write_text('session_idle_ttl = "soon"\n')
    done = _cli(tmp_path, "users", "list", "--config", str(config))
    assert done.returncode == 2
    one_line_error(done.stderr)
    assert f"session_idle_ttl in {config}" in done.stderr
    assert "AUTHGATE_SESSION_IDLE_TTL" not in done.stderr
    env_wins = _cli(tmp_path, "users", "list", "--config", str(config),
                    session_idle_ttl="later")
    assert "AUTHGATE_SESSION_IDLE_TTL" in env_wins.stderr and str(config) not in env_wins.stderr
    config.write_text("sesion_idle_ttl = 60\n")
    typo = _cli(tmp_path, "users", "list", "--config", str(config))
    assert typo.returncode == 2 and "'sesion_idle_ttl' in" in typo.stderr
