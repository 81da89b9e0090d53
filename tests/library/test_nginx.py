"""Behind a reverse proxy: a real nginx (``auth_request`` → ``/auth/verify``) in front of a
backend that only reads the X-Auth-* headers, configured from examples/nginx."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, Server, free_port, in_ci
from tests.helpers import AuthClient

pytestmark = pytest.mark.subprocess  # a real nginx in front of a real server

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


@contextlib.contextmanager
def nginx_stack(make_server: Callable[..., Server], tmp_path: Path
                ) -> Iterator[tuple[str, Server]]:
    """examples/nginx as configured there: nginx in front of authgate and the backend.
    Yields (nginx's origin, the authgate server)."""
    if not os.path.exists(NGINX):
        if in_ci():
            pytest.fail("nginx is not installed (scripts/install-tools.sh)")
        pytest.skip("nginx is not installed")
    nginx_port, app_port = free_port(), free_port()
    front = f"http://127.0.0.1:{nginx_port}"
    auth = make_server(public_url=front, trusted_proxies="127.0.0.1")
    backend = subprocess.Popen([sys.executable, str(ROOT / "examples/nginx/backend.py"),
                                str(app_port)])
    conf = (ROOT / "examples/nginx/nginx.conf.template").read_text()
    for key, value in {"@PREFIX@": str(tmp_path), "@LISTEN@": f"127.0.0.1:{nginx_port}",
                       "@AUTHGATE@": f"127.0.0.1:{auth.port}",
                       "@APP@": f"127.0.0.1:{app_port}"}.items():
        conf = conf.replace(key, value)
    (tmp_path / "nginx.conf").write_text(conf)
    nginx = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                             stderr=subprocess.DEVNULL)
    try:
        _wait(f"http://127.0.0.1:{app_port}/", backend)
        _wait(f"{front}/auth/me", nginx)
        yield front, auth
    finally:
        nginx.terminate()
        backend.terminate()
        nginx.wait(10)
        backend.wait(10)


@pytest.fixture
def stack(make_server: Callable[..., Server], tmp_path: Path) -> Iterator[tuple[str, Server]]:
    with nginx_stack(make_server, tmp_path) as found:
        yield found


def test_nginx_auth_request(stack: tuple[str, Server]) -> None:
    front, auth = stack
    name, pw = auth.new_user("proxy", roles=("staff",))
    c = AuthClient(front, auth.settings)

    assert c.get("/api/data").status_code == 401                    # APIs: 401
    page = c.get("/page", follow_redirects=False)                    # pages: to the login
    assert page.status_code == 303
    assert page.headers["location"].endswith("/login?next=/page")

    spoof = c.get("/api/data", headers={"X-Auth-User-Id": "admin"})   # headers are not trusted
    assert spoof.status_code == 401

    assert c.login(name, pw).status_code == 200                      # through nginx
    seen = c.get("/page").json()
    assert seen["username"] == name and seen["roles"] == "staff" and seen["user_id"]

    token = c.token(name, pw).json()["access_token"]
    api = c.get("/api/data", headers={"Authorization": f"Bearer {token}", "Cookie": "",
                                      "X-Auth-User-Id": "admin"})
    assert api.status_code == 200 and api.json()["user_id"] == seen["user_id"]

    assert c.post("/api/data").status_code == 403                   # cookie + POST: CSRF
    assert c.post("/api/data", headers={"Origin": "https://evil.example",
                                        "X-CSRF-Token": c.csrf or ""}).status_code == 403
    assert c.unsafe("POST", "/api/data").status_code == 200
    assert c.post("/api/data", headers={"Authorization": f"Bearer {token}",
                                        "Cookie": ""}).status_code == 200  # bearer: exempt

    assert c.unsafe("POST", "/auth/logout").status_code == 204
    assert c.get("/api/data").status_code == 401


def test_static_assets_and_subresources_skip_sign_in(stack: tuple[str, Server]) -> None:
    front, _auth = stack
    c = httpx.Client(base_url=front)
    assert c.get("/favicon.ico").status_code == 200                 # never sent to /login
    img = c.get("/private.png", headers={"Sec-Fetch-Dest": "image"})
    assert img.status_code == 401                                    # a subresource: 401
    nav = c.get("/page", headers={"Sec-Fetch-Dest": "document"})
    assert nav.status_code == 303 and "/login?next=/page" in nav.headers["location"]
