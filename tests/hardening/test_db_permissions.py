"""h04: the SQLite database holds the private signing key, so it must not be readable by
other local users, whatever the umask."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import AUTHGATE, Server, env_for

pytestmark = pytest.mark.subprocess  # file modes made by the server and migrate processes


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the usual default: files 0644
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_h04_new_database_files_are_owner_only(tmp_path: Path, loose_umask: None) -> None:
    srv = Server(tmp_path, {}).start()
    try:
        with srv.client() as c:  # a write, so the -wal and -shm files exist
            assert c.post("/auth/register", json={"username": "perm",
                                                  "password": "perm user passphrase"}
                          ).status_code == 201
        for suffix in ("", "-wal", "-shm"):
            path = Path(f"{srv.db_path}{suffix}")
            assert path.exists(), path
            assert mode(path) & 0o077 == 0, (path, oct(mode(path)))
    finally:
        srv.stop()


def test_h04_an_existing_readable_database_is_tightened_with_a_warning(
        tmp_path: Path, loose_umask: None) -> None:
    db = tmp_path / "authgate.db"
    env = env_for({"database_url": f"sqlite:///{db}"})
    done = subprocess.run([AUTHGATE, "migrate"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    db.chmod(0o644)
    srv = Server(tmp_path, {}).start()
    try:
        assert mode(db) == 0o600
        warnings = [line for line in srv.log().splitlines() if "tightened" in line]
        assert len(warnings) == 1 and "644" in warnings[0] and "600" in warnings[0], srv.log()
    finally:
        srv.stop()
