"""Many instances and workers behave like one: two ``authgate serve`` processes on one
PostgreSQL + Redis, and ``--workers N`` on SQLite and PostgreSQL. Every revocation made on one
is refused by the other within one second (the contract's bound)."""

from __future__ import annotations

import http.client
import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server
from tests.helpers import AuthClient

pytestmark = pytest.mark.subprocess  # several instances and workers on one database

BOUND = 1.0


def refused_within(check: Callable[[], int], bound: float = BOUND) -> float:
    """Poll ``check`` (a status code) until it is 401; return the seconds it took."""
    start = time.monotonic()
    while True:
        status = check()
        elapsed = time.monotonic() - start
        if status == 401:
            return elapsed
        assert status == 200, status
        assert elapsed < bound, f"still accepted after {elapsed:.3f} s"
        time.sleep(0.005)


@pytest.fixture
def pair(make_server: Callable[..., Server], pg_url: str, redis_settings: dict[str, str],
         tmp_path: Path) -> tuple[Server, Server]:
    shared = {"database_url": pg_url, **redis_settings}
    a = make_server(workdir=tmp_path, **shared)
    b = make_server(workdir=tmp_path, **shared, public_url=a.url)
    return a, b


def other(client: AuthClient, server: Server) -> AuthClient:
    """The same browser/API client, talking to another instance."""
    twin = server.client()
    twin.jar = client.jar
    twin.csrf = client.csrf
    return twin


def test_session_and_token_work_on_both_and_logout_reaches_the_other(
        pair: tuple[Server, Server]) -> None:
    a, b = pair
    name, pw = a.new_user("twin")
    on_a = a.client()
    assert on_a.login(name, pw).status_code == 200
    on_b = other(on_a, b)
    assert on_b.get("/auth/me").json()["username"] == name          # cookie from A on B
    token = on_a.token(name, pw).json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{b.url}/auth/me", headers=bearer).status_code == 200

    assert on_a.unsafe("POST", "/auth/logout").status_code == 204
    took = refused_within(lambda: on_b.get("/auth/me").status_code)
    assert took < BOUND

    assert httpx.post(f"{a.url}/auth/revoke", data={"token": token}).status_code == 200
    refused_within(lambda: httpx.get(f"{b.url}/auth/me", headers=bearer).status_code)


def test_password_change_and_disable_reach_the_other(pair: tuple[Server, Server]) -> None:
    a, b = pair
    name, pw = a.new_user("twin")
    phone, laptop = a.client(), a.client()
    phone.login(name, pw)
    laptop.login(name, pw)
    token = phone.token(name, pw).json()["access_token"]
    laptop_on_b = other(laptop, b)
    assert laptop_on_b.get("/auth/me").status_code == 200
    assert httpx.get(f"{b.url}/auth/me",
                     headers={"Authorization": f"Bearer {token}"}).status_code == 200
    r = phone.unsafe("POST", "/auth/password",
                     json={"current_password": pw, "new_password": pw + " changed"})
    assert r.status_code == 204
    refused_within(lambda: laptop_on_b.get("/auth/me").status_code)

    fresh = b.client()
    fresh.login(name, pw + " changed")
    fresh_token = fresh.token(name, pw + " changed").json()["access_token"]
    on_a = other(fresh, a)
    assert on_a.get("/auth/me").status_code == 200
    assert b.cli("users", "disable", name).returncode == 0
    refused_within(lambda: on_a.get("/auth/me").status_code)
    refused_within(lambda: httpx.get(
        f"{a.url}/auth/me", headers={"Authorization": f"Bearer {fresh_token}"}).status_code)


class WorkerConnection:
    """One keep-alive HTTP connection to a ``--workers N`` server, and which worker (process
    id) accepted it: read from the kernel (/proc), so the server needs no test-only code and
    tells clients nothing about its processes. Linux only."""

    def __init__(self, srv: Server) -> None:
        assert srv.proc is not None
        self.conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        self.conn.connect()
        assert self.conn.sock is not None
        self.client_port = int(self.conn.sock.getsockname()[1])
        self.srv = srv
        self.server_pid = srv.proc.pid
        self._worker: int | None = None

    def status(self, path: str, headers: dict[str, str]) -> int:
        self.conn.request("GET", path, headers=headers)
        response = self.conn.getresponse()
        response.read()
        return response.status

    @property
    def worker(self) -> int:
        """The pid of the worker holding the server end (call after one response, when the
        worker has surely accepted the connection)."""
        if self._worker is None:
            inode = _server_socket_inode(self.srv.port, self.client_port)
            owners = [pid for pid in _children(self.server_pid)
                      if _holds_socket(pid, inode)]
            assert len(owners) == 1, (inode, owners)
            self._worker = owners[0]
        return self._worker

    def close(self) -> None:
        self.conn.close()


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # field 4, after "(comm)"
            kids.append(int(entry))
    return kids


def _server_socket_inode(server_port: int, client_port: int) -> str:
    """The inode of the TCP socket 127.0.0.1:server_port <- 127.0.0.1:client_port."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if (int(local.rsplit(":", 1)[1], 16) == server_port
                and int(remote.rsplit(":", 1)[1], 16) == client_port):
            return fields[9]
    raise AssertionError(f"no server socket for client port {client_port}")


def _holds_socket(pid: int, inode: str) -> bool:
    target = f"socket:[{inode}]"
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                return True
        except OSError:
            continue
    return False


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_workers_share_revocations(db: str, make_server: Callable[..., Server],
                                   request: pytest.FixtureRequest) -> None:
    """With ``--workers 2`` each worker caches the credentials, and after a log out
    everywhere each worker (told apart by the process that holds the connection) refuses
    both within the bound and never accepts them again."""
    if not Path("/proc/net/tcp").exists():
        pytest.skip("telling workers apart needs Linux /proc")
    settings = {"database_url": request.getfixturevalue("pg_url")} if db == "postgresql" else {}
    workers = 2
    srv = make_server(workers=workers, **settings)
    name, pw = srv.new_user("workers")
    c = srv.client()
    assert c.login(name, pw).status_code == 200
    token = c.token(name, pw).json()["access_token"]
    credentials = {
        "bearer": {"Authorization": f"Bearer {token}"},
        "cookie": {"Cookie": "; ".join(f"{k}={v}" for k, v in c.jar.items())},
    }

    def ask() -> tuple[int, dict[str, int]]:
        """A new connection (so any worker may take it): its worker and both statuses."""
        conn = WorkerConnection(srv)
        try:
            statuses = {kind: conn.status("/auth/me", h) for kind, h in credentials.items()}
            return conn.worker, statuses
        finally:
            conn.close()

    assert srv.proc is not None
    server_pid = srv.proc.pid

    def live(pids: set[int]) -> set[int]:
        # uvicorn's supervisor replaces a worker that misses its health check (a slow start
        # on a loaded machine): only workers still running count.
        return pids & set(_children(server_pid))

    accepted: set[int] = set()
    deadline = time.monotonic() + 60  # the second worker may still be starting
    while len(live(accepted)) < workers:  # every worker has accepted (and cached) both
        assert time.monotonic() < deadline, f"only worker(s) {live(accepted)} answered"
        pid, statuses = ask()
        assert statuses == {"bearer": 200, "cookie": 200}, (pid, statuses)
        accepted.add(pid)
        time.sleep(0.005)
    accepted = live(accepted)

    assert c.unsafe("DELETE", "/auth/sessions").status_code == 204  # log out everywhere
    revoked = time.monotonic()
    refused: dict[int, float] = {}  # worker -> seconds after the log out it was seen refusing
    while len(accepted & refused.keys()) < workers:  # each worker that had cached them
        elapsed = time.monotonic() - revoked
        assert elapsed < BOUND + 30, (
            f"worker(s) {accepted - refused.keys()} not seen refusing "
            f"(still running: {live(accepted)})")
        pid, statuses = ask()
        if statuses == {"bearer": 401, "cookie": 401}:
            refused.setdefault(pid, elapsed)
        else:
            assert pid in accepted, f"a worker that never saw them accepts: {statuses}"
            assert set(statuses.values()) <= {200, 401}, statuses
            assert pid not in refused, f"worker {pid} accepted again after refusing: {statuses}"
            assert elapsed < BOUND, f"worker {pid} still accepts after {elapsed:.3f} s: {statuses}"
        time.sleep(0.005)
