"""Faults: Redis or PostgreSQL unreachable → protected requests get 503 (never 200 on a
credential we can no longer check, never a 500), /healthz says which backend, the log says
so once, and the service recovers by itself. A SIGKILL under load loses no committed record.

Each test runs its own private Redis / PostgreSQL, so stopping it disturbs nobody else."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, free_port, in_ci

pytestmark = pytest.mark.subprocess  # killing and restarting processes, backend faults


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError("condition not reached")
        time.sleep(0.02)
    return time.monotonic() - start


class PrivateRedis:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            if in_ci():
                pytest.fail("redis-server is not installed")
            pytest.skip("redis-server is not installed")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)], stdout=subprocess.DEVNULL)
        import redis

        wait_for(lambda: _pings(redis.Redis(port=self.port)))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None


def _pings(client: object) -> bool:
    import redis

    try:
        return bool(client.ping())  # type: ignore[attr-defined]
    except redis.RedisError:
        return False


class PrivatePostgres:
    """A throw-away PostgreSQL cluster (initdb as the postgres user)."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins or os.geteuid() != 0:
            if in_ci():
                pytest.fail("PostgreSQL server binaries are not available")
            pytest.skip("PostgreSQL server binaries are not available")
        self.bin = Path(bins[-1])
        self.port = free_port()
        # pytest's tmp dirs are private to root; the cluster must belong to postgres.
        self.root = Path(tempfile.mkdtemp(prefix="authgate-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "pgdata"
        self.data.mkdir()
        shutil.chown(self.data, "postgres", "postgres")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                          "--auth=trust", "-E", "UTF8")

    def _as_postgres(self, *cmd: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    def start(self) -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-l",
                          str(self.data / "log"), "-o",
                          f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1",
                          "start")

    def stop(self) -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                          "-w", "stop")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    r = PrivateRedis(tmp_path)
    r.start()
    yield r
    r.stop()


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    pg.start()
    yield pg
    with contextlib.suppress(subprocess.CalledProcessError):
        pg.stop()
    shutil.rmtree(pg.root, ignore_errors=True)


def _signed_in(srv: Server) -> tuple[dict[str, str], dict[str, str]]:
    name, pw = srv.new_user("fault")
    c = srv.client()
    assert c.login(name, pw).status_code == 200
    cookie = {"Cookie": "; ".join(f"{k}={v}" for k, v in c.jar.items())}
    token = c.token(name, pw).json()["access_token"]
    return cookie, {"Authorization": f"Bearer {token}"}


def test_redis_down_fails_closed_and_recovers(make_server: Callable[..., Server],
                                              private_redis: PrivateRedis) -> None:
    srv = make_server(redis_url=f"redis://127.0.0.1:{private_redis.port}/0")
    cookie, bearer = _signed_in(srv)
    me = f"{srv.url}/auth/me"
    assert httpx.get(me, headers=cookie).status_code == 200

    private_redis.stop()
    took = wait_for(lambda: httpx.get(me, headers=cookie).status_code == 503)
    assert took < 2.0  # the one-second bound, plus a poll
    for headers in (cookie, bearer):
        r = httpx.get(me, headers=headers)
        assert r.status_code == 503 and r.json()["error"] == "unavailable"
    health = httpx.get(f"{srv.url}/healthz")
    assert health.status_code == 503 and health.json()["redis"] == "unavailable"
    login = httpx.post(f"{srv.url}/auth/login", json={"username": "x", "password": "y"})
    assert login.status_code == 503  # the throttle lives in Redis: no unthrottled logins

    private_redis.start()
    wait_for(lambda: httpx.get(me, headers=cookie).status_code == 200)
    assert httpx.get(me, headers=bearer).status_code == 200
    assert httpx.get(f"{srv.url}/healthz").status_code == 200
    log = srv.log()
    assert log.count("Redis unreachable") == 1 and "Traceback" not in log


def test_postgres_down_fails_closed_and_recovers(make_server: Callable[..., Server],
                                                 private_pg: PrivatePostgres) -> None:
    srv = make_server(database_url=private_pg.url)
    cookie, bearer = _signed_in(srv)
    me = f"{srv.url}/auth/me"
    assert httpx.get(me, headers=cookie).status_code == 200

    private_pg.stop()
    wait_for(lambda: httpx.get(me, headers=cookie).status_code == 503)
    assert httpx.get(me, headers=bearer).status_code == 503
    health = httpx.get(f"{srv.url}/healthz")
    assert health.status_code == 503 and health.json()["database"] == "unavailable"
    assert httpx.post(f"{srv.url}/auth/login",
                      json={"username": "x", "password": "y"}).status_code == 503

    private_pg.start()
    wait_for(lambda: httpx.get(me, headers=cookie).status_code == 200, timeout=20)
    assert httpx.get(me, headers=bearer).status_code == 200
    log = srv.log()
    assert log.count("revocation log unreachable") == 1 and "Traceback" not in log


def test_sigkill_under_load_loses_no_committed_record(make_server: Callable[..., Server]) -> None:
    srv = make_server()
    created: list[str] = []
    stop = threading.Event()

    def register(worker: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=5) as h:
            n = 0
            while not stop.is_set():
                name = f"kill-{worker}-{n}"
                n += 1
                try:
                    r = h.post("/auth/register", json={"username": name,
                                                       "password": "sigkill test passphrase"})
                except httpx.HTTPError:
                    return
                if r.status_code == 201:
                    created.append(name)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: len(created) >= 10, timeout=30)
    srv.stop(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(10)

    with sqlite3.connect(srv.db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        names = {row[0] for row in db.execute("SELECT username FROM users")}
        hashes = [row[0] for row in db.execute("SELECT password_hash FROM users")]
    assert set(created) <= names  # every 201 the client saw is on disk
    assert all(h.startswith("$argon2id$") for h in hashes)  # no half-written row
    srv.start()
    assert httpx.post(f"{srv.url}/auth/login", json={
        "username": created[0], "password": "sigkill test passphrase"}).status_code == 200
