"""The audit trail and webhooks (issue 13): a scripted sequence of actions shows up in
``authgate audit list`` in order with its fields; the same events reach a webhook receiver
that checks every signature with the Standard Webhooks reference library, through a
receiver outage; ``on_event`` hooks get typed events and a failing one breaks nothing."""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from tests.blackbox.support import eventually, new_name, new_password
from tests.conftest import Server, free_port

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def audit_list(srv: Server, *args: str) -> list[dict[str, Any]]:
    done = srv.cli("audit", "list", "--json", *args)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_a_scripted_sequence_is_in_the_audit_trail_in_order(server: Server) -> None:
    name, password = new_name("aud"), new_password()
    with server.client() as c:
        assert c.post("/auth/register", json={"username": name, "password": password}
                      ).status_code == 201
        assert c.login(name, "not the password at all").status_code == 401
        assert c.login(name, password, headers={"User-Agent": "audit-test/1"}
                       ).status_code == 200
        pair = c.token(name, password).json()
        first = c.post("/auth/token", data={"grant_type": "refresh_token",
                                            "refresh_token": pair["refresh_token"]})
        assert first.status_code == 200
        reuse = c.post("/auth/token", data={"grant_type": "refresh_token",
                                            "refresh_token": pair["refresh_token"]})
        assert reuse.status_code == 400
        assert c.unsafe("POST", "/auth/logout").status_code == 204
    assert server.cli("users", "disable", name).returncode == 0

    def types() -> list[str]:
        return [e["type"] for e in audit_list(server, "--user", name)]

    expected = ["user.created", "sign_in.failed", "sign_in.succeeded", "sign_in.succeeded",
                "refresh.reuse_detected", "sign_out", "user.disabled"]
    assert eventually(lambda: types() == expected, 5), types()
    events = audit_list(server, "--user", name)
    assert all(e["user_id"] == events[0]["user_id"] and e["at"] for e in events)
    assert events[0]["actor"] == "user" and events[-1]["actor"] == "operator"
    assert events[2]["ip"] == "127.0.0.1" and events[2]["user_agent"] == "audit-test/1"
    assert events[2]["data"]["method"] == "session" and events[3]["data"]["method"] == "token"
    assert events[4]["data"]["family_id"]
    text = server.cli("audit", "list", "--user", name).stdout
    assert password not in text and pair["refresh_token"] not in text
    assert server.cli("audit", "list", "--since", "yesterday").returncode == 2


class Receiver:
    """A webhook endpoint that verifies each delivery as the spec's library does."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/hook"
        self.verified: list[tuple[str, dict[str, Any]]] = []
        self.refused = 0
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                try:
                    payload = Webhook(SECRET).verify(body, dict(self.headers))
                except Exception:
                    receiver.refused += 1
                    self.send_response(400)
                else:
                    receiver.verified.append((self.headers["webhook-id"], payload))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port())
    yield r
    r.stop()


def test_webhooks_are_signed_and_survive_a_receiver_outage(
        make_server: Callable[..., Server], receiver: Receiver) -> None:
    srv = make_server(webhook_url=receiver.url, webhook_secret=SECRET)
    name, password = new_name("hook"), new_password()
    with srv.client() as c:  # the receiver is down: deliveries wait in the outbox
        assert c.post("/auth/register", json={"username": name, "password": password}
                      ).status_code == 201
        assert c.login(name, password).status_code == 200

    def pending() -> int:
        done = srv.cli("webhooks", "pending")
        assert done.returncode == 0, done.stderr
        return len(done.stdout.splitlines())

    assert eventually(lambda: "ConnectError" in srv.cli("webhooks", "pending").stdout, 30)
    assert pending() == 2
    receiver.start()
    srv.advance(3600)  # past any backoff
    assert eventually(lambda: len(receiver.verified) == 2, 30), srv.log()[-3000:]
    assert receiver.refused == 0 and pending() == 0
    types = [p["type"] for _, p in receiver.verified]
    assert types == ["user.created", "sign_in.succeeded"]
    payload = receiver.verified[1][1]
    assert set(payload) == {"type", "timestamp", "data"}
    assert payload["data"]["user_id"] and payload["data"]["data"]["method"] == "session"
    assert len({wid for wid, _ in receiver.verified}) == 2  # one delivery id each

    receiver.stop()  # and again: stopped, then restarted
    with srv.client() as c:
        assert c.login(name, password).status_code == 200
    assert eventually(lambda: pending() == 1, 30)
    receiver.start()
    srv.advance(3600)
    assert eventually(lambda: len(receiver.verified) == 3, 30)
    assert receiver.verified[2][1]["type"] == "sign_in.succeeded"


def test_a_forged_signature_is_what_the_receiver_refuses(receiver: Receiver) -> None:
    """The receiver's check can fail: a wrong secret is refused."""
    receiver.start()
    other = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    from authgate.webhooks import secret_key, sign

    body = b'{"type":"x","timestamp":"2026-01-01T00:00:00Z","data":{}}'
    import time

    ts = int(time.time())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(ts),
               "webhook-signature": sign(secret_key(other), "msg_1", ts, body)}
    assert httpx.post(receiver.url, content=body, headers=headers).status_code == 400
    headers["webhook-signature"] = sign(secret_key(SECRET), "msg_1", ts, body)
    assert httpx.post(receiver.url, content=body, headers=headers).status_code == 204


def test_bad_webhook_settings_are_refused(tmp_path: Path) -> None:
    from authgate.errors import ConfigError
    from authgate.settings import load_settings

    with pytest.raises(ConfigError, match="WEBHOOK_SECRET"):
        load_settings(webhook_url="https://hooks.example.test/x")
    with pytest.raises(ConfigError, match="whsec_"):
        load_settings(webhook_url="https://hooks.example.test/x", webhook_secret="plain")


def test_account_page_shows_the_users_own_recent_events(server: Server) -> None:
    name, password = new_name("acct"), new_password()
    other, other_pw = new_name("acct"), new_password()
    with server.client() as c:
        for user, pw in ((name, password), (other, other_pw)):
            assert c.post("/auth/register", json={"username": user, "password": pw}
                          ).status_code == 201
        assert c.login(other, other_pw).status_code == 200
        assert c.login(name, "certainly not the password").status_code == 401
        assert c.login(name, password).status_code == 200

        def page() -> str:
            return c.get("/account").text

        # Events are written in batches: the success may land after the failure.
        assert eventually(lambda: "Failed sign-in attempt" in page()
                          and 'data-type="sign_in.succeeded"' in page(), 5)
        text = page()
        rows = text[text.index("Recent security events"):]
        assert rows.count('data-type="sign_in.succeeded"') == 1  # not the other user's
        assert rows.index("Signed in") < rows.index("Failed sign-in attempt")  # newest first
        assert 'data-type="user.created"' in rows


def test_key_rotation_is_audited(server: Server) -> None:
    done = server.cli("keys", "rotate", "--publish-ahead", "600")
    assert done.returncode == 0, done.stderr
    kid = done.stdout.split()[2]
    rotated = [e for e in audit_list(server) if e["type"] == "key.rotated"]
    assert rotated and rotated[-1]["data"]["kid"] == kid
    assert rotated[-1]["actor"] == "operator" and rotated[-1]["user_id"] is None
