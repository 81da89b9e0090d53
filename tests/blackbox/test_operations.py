"""Operations (issue 13, first part): JSON logs with request ids, the access log, the
liveness and readiness probes, and a protected /metrics."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from tests.blackbox.support import eventually, register
from tests.conftest import Server


def json_lines(srv: Server) -> list[dict[str, object]]:
    return [json.loads(line) for line in srv.log().splitlines() if line.strip()]


def test_json_logs_every_line_parses_and_carries_the_request_id(
        make_server: Callable[..., Server]) -> None:
    srv = make_server(log_format="json", trusted_proxies="10.9.9.9")
    username, password, _ = register(srv)
    with srv.client() as c:
        r = c.login(username, password + "wrong")
        assert r.status_code == 401
        rid = r.headers["x-request-id"]
        assert eventually(lambda: any(e.get("request_id") == rid and
                                      e.get("event") == "login_failed"
                                      for e in json_lines(srv)), 5)
    entries = json_lines(srv)  # raises on any line that is not JSON
    assert entries and all({"timestamp", "level", "logger", "message", "request_id"} <= set(e)
                           for e in entries)
    assert any(e["logger"] == "authgate.access" and e.get("path") == "/auth/login"
               and e.get("status") == 401 for e in entries)
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


def test_access_log_omits_query_strings_and_can_be_turned_off(
        make_server: Callable[..., Server]) -> None:
    on = make_server()
    httpx.get(f"{on.url}/login?next=/secret-query-value")
    assert eventually(lambda: "GET /login 200" in on.log(), 5), on.log()
    assert "secret-query-value" not in on.log()
    off = make_server(access_log=False)
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
