"""Run the examples the way their docstrings say: uvicorn in a subprocess."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import AUTHGATE, ROOT, env_for, free_port

UVICORN = str(Path(sys.executable).with_name("uvicorn"))


class App:
    def __init__(self, module: str, workdir: Path, **settings: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = {"database_url": f"sqlite:///{workdir / 'app.db'}",
                         "public_url": self.url, **settings}
        self.env = env_for(self.settings)
        self.log = workdir / f"{module}.log"
        self.proc = subprocess.Popen(
            [UVICORN, f"examples.{module}:app", "--port", str(self.port), "--no-access-log"],
            cwd=ROOT, env=self.env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(self.log.read_text())
            try:
                httpx.get(f"{self.url}/.well-known/jwks.json", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)

    def user(self, name: str, *roles: str) -> tuple[str, str]:
        password = f"{name} has a long passphrase"
        args = [a for r in roles for a in ("--role", r)]
        done = subprocess.run([AUTHGATE, "users", "create", name, "--password-stdin", *args],
                              env=self.env, input=password + "\n", text=True,
                              capture_output=True, cwd=ROOT, timeout=60)
        assert done.returncode == 0, done.stderr
        return name, password

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def run_example(tmp_path: Path) -> Iterator[Callable[..., App]]:
    apps: list[App] = []

    def run(module: str, **settings: Any) -> App:
        app = App(module, tmp_path, **settings)
        apps.append(app)
        return app

    yield run
    for app in apps:
        app.stop()
