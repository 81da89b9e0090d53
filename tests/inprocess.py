"""The in-process server: the real server app (``create_server_app``, what ``authgate serve``
runs) served by uvicorn in a background thread of the pytest process.

It has the interface of :class:`tests.conftest.Server` (``url``, ``settings``, ``advance``,
``client``, ``new_user``, ``db_path``, ``log``, ``start``/``stop``/``restart``, ``cli``), so
a test written against a subprocess server runs against it unchanged, over real HTTP on a
loopback port. What differs, and why it is faster:

- no process to start (a subprocess server costs about a second, mostly imports);
- time moves through an injected clock (real time plus an offset), not an offset file;
- ``new_user`` calls the engine's users service on the server's own event loop instead of
  running ``authgate users create`` (about 1.1 s a user).

What needs a real process (``--workers``, signals, killing a process, the CLI's own checks
at ``serve`` time, several processes sharing a database) stays on the subprocess layer:
mark the test module ``pytestmark = pytest.mark.subprocess``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.helpers import AuthClient, ReadsTokens

T = TypeVar("T")

#: One settings load at a time: the environment is swapped while it runs.
_ENV_LOCK = threading.Lock()


class OffsetClock:
    """Real time plus an offset the test moves (what the subprocess layer's clock file
    does, without a file)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """``os.environ`` replaced by ``env`` for the block (settings are read from it exactly as
    ``authgate serve`` reads them)."""
    with _ENV_LOCK:
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)


class _ThreadLog(logging.Filter):
    """Only the records of one server's thread (several in-process servers may run at once;
    each writes its own log), and not httpx's per-request lines (``authgate.logs.configure``
    silences those in a real server)."""

    def __init__(self, thread_id: int) -> None:
        super().__init__()
        self.thread_id = thread_id

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("httpx") and record.levelno < logging.WARNING:
            return False
        return record.thread == self.thread_id


class InProcessServer(ReadsTokens):
    """``create_server_app`` under uvicorn in a thread of this process."""

    def __init__(self, workdir: Path, settings: dict[str, Any], workers: int = 1,
                 port: int | None = None) -> None:
        from tests.conftest import SUITE_LIMITS, free_port

        if workers != 1:
            raise ValueError("several workers need the subprocess layer (tests.conftest.Server)")
        self.workdir = workdir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.clock = OffsetClock()
        self.settings: dict[str, Any] = {
            "database_url": f"sqlite:///{workdir / 'authgate.db'}",
            "public_url": self.url,
            **SUITE_LIMITS,  # as on the subprocess layer
            **settings,
        }
        self.workers = workers
        self.log_path = workdir / f"server-{self.port}.log"
        self._thread: threading.Thread | None = None
        self._uvicorn: Any = None
        self._gate: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handler: logging.Handler | None = None
        self._error: BaseException | None = None

    @property
    def env(self) -> dict[str, str]:
        from tests.conftest import env_for

        return env_for(self.settings)

    @property
    def db_path(self) -> Path:
        return Path(str(self.settings["database_url"]).split(":///", 1)[1])

    @property
    def engine(self) -> Any:
        """The running engine (tests may call its public services through :meth:`run`)."""
        return self._gate.engine

    # -- lifecycle --------------------------------------------------------------------------

    def _load_settings(self) -> Any:
        from authgate.errors import ConfigError
        from authgate.settings import load_settings

        with _environment(self.env):
            try:
                return load_settings(None)
            except ConfigError as exc:
                raise RuntimeError(f"authgate serve exited: {exc.detail}") from None

    def start(self) -> InProcessServer:
        import uvicorn

        from authgate.cli.serve import bind
        from authgate.gate import AuthGate
        from authgate.web.app import create_server_app

        settings = self._load_settings()
        sock = bind("127.0.0.1", self.port)  # as `authgate serve` binds
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._gate = AuthGate(settings, clock=self.clock)
                app = create_server_app(gate=self._gate)
                config = uvicorn.Config(app, access_log=False, log_level="warning",
                                        log_config=None, proxy_headers=False,
                                        server_header=False, timeout_graceful_shutdown=5,
                                        lifespan="on")
                self._uvicorn = uvicorn.Server(config)
                ready.set()
                loop.run_until_complete(self._uvicorn.serve(sockets=[sock]))
            except BaseException as exc:  # reported by start()
                self._error = exc
            finally:
                ready.set()
                sock.close()
                # As asyncio.run ends a loop: whatever is still running (a request that
                # outlived the graceful shutdown, a driver's pending call) is cancelled and
                # awaited, so no database thread calls back into a closed loop later.
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
                loop.close()

        self._thread = threading.Thread(target=run, name=f"authgate-{self.port}", daemon=True)
        self._thread.start()
        assert self._thread.ident is not None
        self._attach_log(self._thread.ident, settings.log_format)
        ready.wait(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not self._thread.is_alive():
                self._thread = None
                self._detach_log()
                raise RuntimeError(f"authgate serve exited: {self._error!r} {self.log()}")
            if self._uvicorn is not None and self._uvicorn.started:
                try:
                    if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"authgate serve did not answer: {self.log()}")

    def _attach_log(self, thread_id: int, fmt: str) -> None:
        from authgate.logs import JsonFormatter, RequestIdFilter, TextFormatter

        handler = logging.FileHandler(self.log_path, encoding="utf-8")
        handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
        handler.addFilter(RequestIdFilter())
        handler.addFilter(_ThreadLog(thread_id))
        logging.getLogger().addHandler(handler)
        for name in ("authgate", "uvicorn"):  # what authgate.logs.configure lets through
            if logging.getLogger(name).getEffectiveLevel() > logging.INFO:
                logging.getLogger(name).setLevel(logging.INFO)
        self._handler = handler

    def _detach_log(self) -> None:
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
            self._handler.close()
            self._handler = None

    def stop(self, sig: int | None = None) -> None:
        import signal

        if sig not in (None, signal.SIGTERM, signal.SIGINT):
            raise ValueError("signals need the subprocess layer (tests.conftest.Server)")
        if self._thread is None:
            return
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        self._thread.join(15)
        if self._thread.is_alive() and self._uvicorn is not None:
            self._uvicorn.force_exit = True
            self._thread.join(5)
        self._thread = None
        self._uvicorn = None
        self._detach_log()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def offset(self) -> float:
        """How far this server's clock is ahead of the real one."""
        return self.clock.offset

    def advance(self, seconds: float) -> None:
        """Move this server's clock forward without sleeping."""
        self.clock.offset += seconds

    # -- driving it -------------------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run ``coro`` on the server's event loop (where its engine lives); its result."""
        assert self._loop is not None, "the server is not running"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def client(self, **kwargs: Any) -> AuthClient:
        return AuthClient(self.url, self.settings, **kwargs)

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """The real CLI on this server's database (its clock is the real one: a command that
        depends on a moved clock belongs on the subprocess layer)."""
        from tests.conftest import AUTHGATE

        return subprocess.run([AUTHGATE, *args], cwd=self.workdir, env=self.env, input=input,
                              capture_output=True, text=True, timeout=60)

    def new_user(self, prefix: str = "user", password: str | None = None,
                 roles: tuple[str, ...] = ()) -> tuple[str, str]:
        """Create a user through the engine's users service (what ``authgate users create``
        calls); returns (username, password)."""
        username = f"{prefix}-{uuid.uuid4().hex[:10]}"
        password = password or f"pw {uuid.uuid4().hex} long enough"
        engine = self.engine

        async def create() -> None:
            await engine.users.create_user(username, password, list(roles))
            await engine.events.flush()  # as the CLI does before it exits

        self.run(create())
        return username, password
