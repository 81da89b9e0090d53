"""Operations (issue 13, first part): JSON logs with request ids, the access log, the
liveness and readiness probes, and a protected /metrics."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.blackbox.support import eventually, register
from tests.conftest import AUTHGATE, ROOT, Server, env_for, free_port


def json_lines(srv: Server) -> list[dict[str, object]]:
    return [json.loads(line) for line in srv.log().splitlines() if line.strip()]


def test_json_logs_every_line_parses_and_carries_the_request_id(
        make_server: Callable[..., Server]) -> None:
    srv = make_server(log_format="json", trusted_proxies="10.9.9.9", access_log=True)
    username, password, _ = register(srv)
    with srv.client() as c:
        r = c.login(username, password + "wrong")
        assert r.status_code == 401
        rid = r.headers["x-request-id"]
        assert eventually(lambda: any(e.get("request_id") == rid and
                                      e.get("event") == "sign_in.failed"
                                      for e in json_lines(srv)), 5)
    # The access line is written once the response is sent: it may trail the event's line.
    assert eventually(lambda: any(e["logger"] == "authgate.access"
                                  and e.get("path") == "/auth/login" and e.get("status") == 401
                                  for e in json_lines(srv)), 5)
    entries = json_lines(srv)  # raises on any line that is not JSON
    assert entries and all({"timestamp", "level", "logger", "message", "request_id"} <= set(e)
                           for e in entries)
    assert password not in srv.log()


def test_request_id_from_a_trusted_proxy_only(make_server: Callable[..., Server]) -> None:
    trusting = make_server(trusted_proxies="127.0.0.1")
    sent = {"X-Request-ID": "lb-1234-abcd"}
    assert httpx.get(f"{trusting.url}/livez", headers=sent).headers["x-request-id"] == \
        "lb-1234-abcd"
    assert httpx.get(f"{trusting.url}/livez",
                     headers={"X-Request-ID": "bad id\twith spaces"}
                     ).headers["x-request-id"] != "bad id\twith spaces"
    other = make_server()
    echoed = httpx.get(f"{other.url}/livez", headers=sent).headers["x-request-id"]
    assert echoed != "lb-1234-abcd" and len(echoed) == 16


def test_access_log_omits_query_strings_and_is_off_by_default(
        make_server: Callable[..., Server]) -> None:
    on = make_server(access_log=True)
    httpx.get(f"{on.url}/login?next=/secret-query-value")
    assert eventually(lambda: "GET /login 200" in on.log(), 5), on.log()
    assert "secret-query-value" not in on.log()
    off = make_server()
    httpx.get(f"{off.url}/login")
    assert "GET /login" not in off.log()


def test_probes(server: Server) -> None:
    live = httpx.get(f"{server.url}/livez")
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "ok"
    assert httpx.get(f"{server.url}/healthz").json() == ready.json()


def test_metrics_token(make_server: Callable[..., Server]) -> None:
    srv = make_server(metrics_token="m3trics-t0ken-for-the-scraper")
    assert httpx.get(f"{srv.url}/metrics").status_code == 401
    wrong = {"Authorization": "Bearer m3trics-t0ken-for-the-scrapeR"}
    assert httpx.get(f"{srv.url}/metrics", headers=wrong).status_code == 401
    ok = httpx.get(f"{srv.url}/metrics",
                   headers={"Authorization": "Bearer m3trics-t0ken-for-the-scraper"})
    assert ok.status_code == 200 and "authgate_cached_sessions" in ok.text


def _cli(tmp_path: Path, *args: str, **settings: object) -> subprocess.CompletedProcess[str]:
    env = env_for({"database_url": f"sqlite:///{tmp_path / 'ops.db'}", **settings})
    return subprocess.run([AUTHGATE, *args], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)


def test_config_check_reports_each_unreachable_backend(tmp_path: Path) -> None:
    ok = _cli(tmp_path, "config", "check")
    assert ok.returncode == 0 and "configuration ok" in ok.stdout, ok.stderr
    bad = _cli(tmp_path, "config", "check",
               database_url=f"postgresql://nobody@127.0.0.1:{free_port()}/none",
               redis_url=f"redis://127.0.0.1:{free_port()}/0")
    assert bad.returncode == 1
    lines = bad.stderr.strip().splitlines()
    assert "Traceback" not in bad.stderr
    assert len(lines) == 2, bad.stderr
    assert lines[0].startswith("authgate: error: database postgresql://")
    assert lines[1].startswith("authgate: error: redis redis://")
    typo = _cli(tmp_path, "config", "check", session_idle_ttl="abc")
    assert typo.returncode == 2 and "AUTHGATE_SESSION_IDLE_TTL" in typo.stderr


def test_unknown_setting_names_are_warned_about_with_the_closest_one(tmp_path: Path) -> None:
    done = _cli(tmp_path, "config", "check", sesion_idle_ttl="60")
    assert done.returncode == 0
    assert ("unknown setting AUTHGATE_SESION_IDLE_TTL is ignored (did you mean "
            "AUTHGATE_SESSION_IDLE_TTL?)") in done.stderr


def test_config_show_redacts_secrets_and_names_sources(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("session_idle_ttl = 600\n")
    done = _cli(tmp_path, "config", "show", "--json", "--config", str(config),
                metrics_token="super-secret-metrics-token",
                redis_url="redis://:hunter2pass@127.0.0.1:6379/0")
    assert done.returncode == 0, done.stderr
    assert "super-secret-metrics-token" not in done.stdout and "hunter2pass" not in done.stdout
    rows = {r["name"]: r for r in json.loads(done.stdout)}
    assert rows["AUTHGATE_SESSION_IDLE_TTL"] == {"name": "AUTHGATE_SESSION_IDLE_TTL",
                                                 "value": 600, "source": f"file ({config})"}
    assert rows["AUTHGATE_METRICS_TOKEN"]["value"] == "********"
    assert rows["AUTHGATE_METRICS_TOKEN"]["source"] == \
        "environment (AUTHGATE_METRICS_TOKEN)"
    assert rows["AUTHGATE_ACCESS_TOKEN_TTL"]["source"] == "default"


def test_readme_settings_table_matches_the_settings_model() -> None:
    """Every setting is in the README's table and the table names no other."""
    from authgate.settings import Settings

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Settings"):readme.index("## Embed it")]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    names = {n.upper() for n in Settings.model_fields}
    assert names - documented == set(), "settings missing from the README's table"
    algorithms = {"ES256", "RS256", "HS256"}
    assert documented - names - algorithms == set(), "README names settings that do not exist"


def _families(text: str) -> dict[str, list[Any]]:
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_metrics_catalogue(server: Server) -> None:
    username, password, _ = register(server)
    with server.client() as c:
        assert c.login(username, password + "x").status_code == 401
        assert c.login(username, password).status_code == 200
        assert c.get("/auth/me").status_code == 200
        assert c.get("/auth/me").status_code == 200
        pair = c.token(username, password).json()
        assert c.post("/auth/token", data={"grant_type": "refresh_token",
                                           "refresh_token": pair["refresh_token"]}
                      ).status_code == 200
    text = httpx.get(f"{server.url}/metrics").text
    families = _families(text)  # raises if the exposition is malformed

    def value(name: str, **labels: str) -> float:
        return sum(s.value for s in families[name] if all(
            s.labels.get(k) == v for k, v in labels.items()))

    assert value("authgate_sign_ins", outcome="succeeded") >= 2
    assert value("authgate_sign_ins", outcome="failed") >= 1
    assert value("authgate_tokens_issued") >= 2
    assert value("authgate_refreshes", outcome="rotated") >= 1
    assert value("authgate_cache_lookups", cache="session", result="hit") >= 1
    assert value("authgate_events", type="user.created") >= 1
    login_latency = [s for s in families["authgate_request_duration_seconds"]
                     if s.name.endswith("_count") and s.labels.get("route") == "/auth/login"]
    assert login_latency and login_latency[0].value >= 2
    for gauge in ("authgate_password_hash_waiting", "authgate_cached_sessions",
                  "authgate_revocation_fresh", "authgate_outbox_pending"):
        assert gauge in families, gauge


def test_metrics_address_serves_them_apart_from_the_public_port(
        make_server: Callable[..., Server]) -> None:
    port = free_port()
    srv = make_server(metrics_address=f"127.0.0.1:{port}")
    assert httpx.get(f"{srv.url}/metrics").status_code == 404
    apart = httpx.get(f"http://127.0.0.1:{port}/metrics")
    assert apart.status_code == 200 and "authgate_sign_ins" in apart.text
    assert httpx.get(f"http://127.0.0.1:{port}/other").status_code == 404


def test_no_secret_in_any_log_line(make_server: Callable[..., Server]) -> None:
    """A whole black-box run of the flows, JSON logs and the access log on: none of the
    secrets it used appears in the server's output."""
    import base64
    import secrets as pysecrets

    webhook_secret = "whsec_" + base64.b64encode(pysecrets.token_bytes(32)).decode()
    metrics_token = "metrics-" + pysecrets.token_urlsafe(16)
    srv = make_server(log_format="json", access_log=True,
                      webhook_url=f"http://127.0.0.1:{free_port()}/h",
                      webhook_secret=webhook_secret, metrics_token=metrics_token)
    username, password, _ = register(srv)
    used = [password, webhook_secret, metrics_token]
    with srv.client() as c:
        assert c.login(username, password + "-wrong").status_code == 401
        used.append(password + "-wrong")
        assert c.login(username, password).status_code == 200
        used += [c.session_value or "", c.csrf or ""]
        pair = c.token(username, password).json()
        used += [pair["access_token"], pair["refresh_token"]]
        bearer = {"Authorization": f"Bearer {pair['access_token']}"}
        assert c.get("/auth/me", headers=bearer).status_code == 200
        refreshed = c.post("/auth/token", data={"grant_type": "refresh_token",
                                                "refresh_token": pair["refresh_token"]})
        used += [refreshed.json()["access_token"], refreshed.json()["refresh_token"]]
        assert c.post("/auth/token", data={"grant_type": "refresh_token",  # reuse
                                           "refresh_token": pair["refresh_token"]}
                      ).status_code == 400
        new_password = password + "-changed"
        assert c.unsafe("POST", "/auth/password", json={
            "current_password": password, "new_password": new_password}).status_code == 204
        used.append(new_password)
        cookie = c.post("/auth/token", data={"grant_type": "password", "username": username,
                                             "password": new_password, "cookie": "1"})
        assert cookie.status_code == 200
        used += list(c.jar.values())
        c.csrf = cookie.json()["csrf_token"]  # the token cookie now authenticates
        assert c.post("/auth/revoke", data={"token": refreshed.json()["access_token"]}
                      ).status_code == 200
        assert httpx.get(f"{srv.url}/metrics", headers={
            "Authorization": f"Bearer {metrics_token}"}).status_code == 200
        assert c.get("/auth/me", headers={"Authorization": "Bearer " + "x" * 40}
                     ).status_code == 401
        assert c.unsafe("DELETE", "/auth/sessions").status_code == 204
    assert eventually(lambda: "sign_out.everywhere" in srv.log(), 5)
    log = srv.log()
    json_lines(srv)  # every line is JSON
    leaked = [s[:12] + "…" for s in used if s and len(s) >= 8 and s in log]
    assert leaked == [], leaked
