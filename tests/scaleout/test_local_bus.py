"""Without Redis, workers and instances learn a revocation in milliseconds (issue 16 item
7): a Unix socket bus next to the SQLite file, PostgreSQL's LISTEN/NOTIFY on PostgreSQL.
The database log polled every REVOCATION_POLL_INTERVAL stays the backstop; these tests set
it to its slowest (1 s) so only the bus can explain a fast refusal."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.blackbox.support import register
from tests.conftest import Server
from tests.scaleout.test_instances import WorkerConnection, _children

pytestmark = pytest.mark.subprocess  # workers of one server (processes) sharing the local bus

SLOW_POLL = {"revocation_poll_interval": 1.0}


def fresh_status(url: str, token: str) -> int:
    """GET /auth/me on a new connection (so any worker may answer)."""
    with httpx.Client(base_url=url) as c:
        return c.get("/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code


def token_for(srv: Server) -> str:
    username, password, _ = register(srv)
    with srv.client() as c:
        return str(c.token(username, password).json()["access_token"])


def test_workers_on_sqlite_refuse_a_revoked_token_on_the_very_next_request(
        make_server: Callable[..., Server]) -> None:
    """Each worker (told apart by the process holding the connection) has the token cached;
    after the revoke, every request to every worker is refused at once — no wait."""
    srv = make_server(workers=2, **SLOW_POLL)
    assert srv.proc is not None
    token = token_for(srv)
    bearer = {"Authorization": f"Bearer {token}"}

    def ask() -> tuple[int, int]:
        conn = WorkerConnection(srv)
        try:
            status = conn.status("/auth/me", bearer)  # first: then the worker has accepted
            return conn.worker, status
        finally:
            conn.close()

    workers: set[int] = set()
    deadline = time.monotonic() + 60
    while len(workers & set(_children(srv.proc.pid))) < 2:
        assert time.monotonic() < deadline, workers
        pid, status = ask()
        assert status == 200
        workers.add(pid)
    assert httpx.post(f"{srv.url}/auth/revoke", data={"token": token}).status_code == 200
    refused: set[int] = set()
    while len(refused & workers) < 2:
        pid, status = ask()
        assert status == 401, f"worker {pid} still accepted the revoked token"
        refused.add(pid)


def test_instances_on_postgresql_without_redis_learn_it_by_notify(
        make_server: Callable[..., Server], pg_url: str, tmp_path: object) -> None:
    a = make_server(database_url=pg_url, **SLOW_POLL)
    b = make_server(database_url=pg_url, public_url=a.url, **SLOW_POLL)
    delays = []
    for _ in range(5):
        token = token_for(a)
        assert fresh_status(b.url, token) == 200
        assert httpx.post(f"{a.url}/auth/revoke", data={"token": token}).status_code == 200
        start = time.monotonic()
        while True:  # the delay is when the first refused request was sent
            sent = time.monotonic() - start
            if fresh_status(b.url, token) == 401:
                break
            assert sent < 1.0
            time.sleep(0.002)
        delays.append(sent)
    # A 1 s poll alone gives a median near 0.5 s; NOTIFY at commit, a few milliseconds.
    assert sorted(delays)[2] < 0.1, delays
    metrics = httpx.get(f"{b.url}/metrics").text  # B measured what it was sent
    count = [line for line in metrics.splitlines()
             if line.startswith("authgate_revocation_delay_seconds_count")]
    assert count and float(count[0].split()[-1]) >= 5, count
