"""Shared fixtures: a real ``authgate serve`` process driven over HTTP, with a moved clock.

``server`` is one module-wide server on a fresh SQLite file with the default (secure)
settings, except the cheap test preset for password hashes; ``make_server(**settings)``
starts more with other settings. Settings are passed as the ``AUTHGATE_*`` environment,
exactly as an operator would; the clock file as the test-only ``AUTHGATE_TEST_CLOCK_FILE``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from authgate.settings import is_loopback_host
from tests.helpers import AuthClient, ReadsTokens, share_default_ssl_context

share_default_ssl_context()

ROOT = Path(__file__).resolve().parent.parent
AUTHGATE = str(Path(sys.executable).with_name("authgate"))
POSTGRES_URL = os.environ.get("AUTHGATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("AUTHGATE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(settings: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGATE_")}
    for key, value in settings.items():
        if value is None:  # the product's default (over one the suite sets)
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        env[f"AUTHGATE_{key.upper()}"] = str(value)
    return env


#: The suite registers (and revokes) far more than 20 times from 127.0.0.1 on one server,
#: and sends refused credentials on purpose; the default per-address limits are tested on
#: servers of their own (a test passes ``name=None`` for the product's default).
SUITE_LIMITS: dict[str, Any] = {"registration_limit": 1_000_000, "revoke_limit": 1_000_000,
                                "credential_guess_limit": 1_000_000}


class Server(ReadsTokens):
    """One ``authgate serve`` subprocess."""

    def __init__(self, workdir: Path, settings: dict[str, Any], workers: int = 1,
                 port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.clock_file = workdir / "clock"
        self.offset = 0.0
        if not self.clock_file.exists():
            self.clock_file.write_text("0")
        self.settings: dict[str, Any] = {
            "database_url": f"sqlite:///{workdir / 'authgate.db'}",
            "public_url": self.url,
            **SUITE_LIMITS,
            **settings,
        }
        if is_loopback_host(urlsplit(str(self.settings["public_url"])).hostname):
            # argon2-cffi's cheapest parameters: the suite tests authentication, not Argon2's
            # cost (Settings refuse the preset for other PUBLIC_URLs, as in production).
            # Tests that pin the production hash pass password_hash_preset="default".
            self.settings.setdefault("password_hash_preset", "test")
        self.workers = workers
        self.log_path = workdir / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        # The moved clock is not a setting: the CLI reads this test-only variable.
        return {**env_for(self.settings), "AUTHGATE_TEST_CLOCK_FILE": str(self.clock_file)}

    @property
    def db_path(self) -> Path:
        return Path(str(self.settings["database_url"]).split(":///", 1)[1])

    def start(self) -> Server:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [AUTHGATE, "serve", "--port", str(self.port), "--workers", str(self.workers)],
            cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"authgate serve exited: {self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"authgate serve did not answer: {self.log()}")

    def stop(self, sig: int | None = None) -> None:
        if self.proc is None:
            return
        if sig is None:
            self.proc.terminate()
        else:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def advance(self, seconds: float) -> None:
        """Move this server's clock forward (all its workers) without sleeping."""
        self.offset += seconds
        self.clock_file.write_text(repr(self.offset))
        time.sleep(0.02)  # let mtime granularity tick

    def client(self, **kwargs: Any) -> AuthClient:
        return AuthClient(self.url, self.settings, **kwargs)

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([AUTHGATE, *args], cwd=self.workdir, env=self.env, input=input,
                              capture_output=True, text=True, timeout=60)

    def new_user(self, prefix: str = "user", password: str | None = None,
                 roles: tuple[str, ...] = ()) -> tuple[str, str]:
        """Create a user with the CLI; returns (username, password)."""
        username = f"{prefix}-{uuid.uuid4().hex[:10]}"
        password = password or f"pw {uuid.uuid4().hex} long enough"
        role_args = [a for r in roles for a in ("--role", r)]
        done = self.cli("users", "create", username, "--password-stdin", *role_args,
                        input=password + "\n")
        assert done.returncode == 0, done.stderr
        return username, password


#: The backends the contract suite runs on. A test module opts in to all of them with
#: ``ALL_BACKENDS = True``: its ``server`` is then started once per backend.
CONTRACT_BACKENDS = ("sqlite", "postgresql+redis")
#: SQLite with ``TOKEN_ENCRYPTION=true`` (nested JWTs). Only the contract modules that deal
#: with access tokens run on it too, opting in with ``ENCRYPTED_BACKEND = True`` beside
#: ``ALL_BACKENDS`` (the session-only modules never see an access token; NOTES-jwe2.md has
#: the timings). Tests read claims through ``Server.signed_token``.
ENCRYPTED_CONTRACT_BACKEND = "sqlite+encryption"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if ("contract_backend" in metafunc.fixturenames
            and getattr(metafunc.module, "ALL_BACKENDS", False)):
        backends = CONTRACT_BACKENDS
        if getattr(metafunc.module, "ENCRYPTED_BACKEND", False):
            backends = (*backends, ENCRYPTED_CONTRACT_BACKEND)
        metafunc.parametrize("contract_backend", backends, scope="module")


@pytest.fixture(scope="module")
def contract_backend() -> str:
    return "sqlite"


def server_class(request: pytest.FixtureRequest, workers: int = 1) -> type[Server]:
    """The subprocess :class:`Server` for a test (or module) marked ``subprocess`` or one
    that asks for several workers; else the in-process server (same interface)."""
    from tests.inprocess import InProcessServer

    if (workers != 1 or request.node.get_closest_marker("subprocess") is not None
            or request.config.getoption("all_subprocess")):
        return Server
    return InProcessServer  # type: ignore[return-value]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--all-subprocess", action="store_true", dest="all_subprocess",
                     help="run every server on the subprocess layer (to compare the layers)")


#: In-process tests that still take seconds (they drive the real CLI, run mypy, fuzz, or
#: count a throttle up): in the full run, not in the fast layer. Measured with --durations.
SLOW_TESTS = frozenset(f"tests/{name}" for name in (
    "tokens/test_token_encryption.py::test_rotation_with_overlap",
    "tokens/test_token_encryption.py::test_encryption_off_reads_tokens_issued_while_it_was_on",
    "tokens/test_token_encryption.py::test_export_decryption_key_prints_the_private_jwk_with_a_warning",
    "tokens/test_token_encryption.py::test_token_is_a_compact_jwe_with_the_contract_header",
    "tokens/test_token_flow.py::test_role_scopes_string_form_no_traceback",
    "tokens/test_token_flow.py::test_jti_and_refresh_tokens_unique",
    "tokens/test_token_flow.py::test_key_rotation",
    "tokens/test_token_flow.py::test_cli_disable_refuses_old_tokens",
    "tokens/test_token_flow.py::test_cli_set_password_refuses_old_tokens",
    "tokens/test_vectors.py::test_validly_signed_arbitrary_claims",
    "tokens/test_vectors.py::test_peek_header_and_verify_arbitrary_json",
    "tokens/test_vectors.py::test_strict_json_arbitrary_text",
    "hardening/test_fuzz_openapi.py::test_fuzz_openapi_junk_bodies",
    "hardening/test_fuzz_openapi.py::test_fuzz_openapi_no_server_error",
    "hardening/test_throttle_hardening.py::test_h05_device_cookie_bypasses_the_lock_only_for_its_owner",
    "library/test_typing.py::test_user_app_passes_mypy_strict",
    "blackbox/test_audit_webhooks.py::test_a_scripted_sequence_is_in_the_audit_trail_in_order",
    "blackbox/test_audit_webhooks.py::test_webhooks_are_signed_and_survive_a_receiver_outage",
    "blackbox/test_audit_webhooks.py::test_key_rotation_is_audited",
    "blackbox/test_login_throttle.py::test_authn_07_per_ip_limit_cannot_be_dodged_with_x_forwarded_for",
    "blackbox/test_login_throttle.py::test_authn_07_trusted_proxy_x_forwarded_for_is_the_client",
    "blackbox/test_login_throttle.py::test_authn_02_no_gross_timing_difference",
    "blackbox/test_bad_input.py::test_sess_10_garbage_session_cookie_is_401",
    "blackbox/test_operations.py::test_config_check_reports_each_unreachable_backend",
    "web/test_parsing.py::test_a_json_object_reads_back",
    "web/test_parsing.py::test_a_json_key_given_twice_is_always_refused",
    "test_advisories.py::test_jwe_positive_control_issued_and_forged",
    "unit/test_engine.py::test_engine_imports_no_web_framework",
    "unit/test_engine.py::test_webauthn_is_loaded_by_the_first_passkey_ceremony_only",
    "blackbox/test_mail_delivery.py::test_cli_users_with_email",
    "blackbox/test_mail_delivery.py::test_an_smtp_outage_delays_mail_and_loses_none",
    "blackbox/test_mail_delivery.py::test_outbox_depth_metric",
    "blackbox/test_mail_delivery.py::test_starttls_refused_when_the_certificate_is_not_trusted",
    "blackbox/test_mail_delivery.py::test_a_database_of_the_previous_release_gets_addresses",
    "blackbox/test_mail_delivery.py::test_tls_and_auth",
    "blackbox/test_account_mail.py::test_every_step_is_in_the_audit_trail",
    "blackbox/test_mfa.py::test_operator_mfa_reset_ends_sessions",
))


#: Fixtures of real services beyond SQLite: a test that takes one runs in the full suite.
OUTSIDE_FAST_LAYER = frozenset({"pg_url", "redis_settings", "persistent_redis", "node",
                                "node_modules", "browser", "page"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fast layer (``-m fast``, ``scripts/test.sh --fast``): in-process tests on SQLite
    that take well under a second. Not in it: tests marked ``subprocess`` or ``browser``, the
    PostgreSQL, Redis and encrypted-token reruns of a test, tests that take such a service
    or Node (:data:`OUTSIDE_FAST_LAYER`), and :data:`SLOW_TESTS`."""
    for item in items:
        base, _, params = item.nodeid.partition("[")
        needs = set(getattr(item, "fixturenames", ())) & OUTSIDE_FAST_LAYER
        if (item.get_closest_marker("subprocess") is None and base not in SLOW_TESTS
                and item.get_closest_marker("browser") is None and not needs
                and not any(name in params for name in ("postgres", "redis", "encryption"))):
            item.add_marker(pytest.mark.fast)


@contextmanager
def backend_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                   contract_backend: str, **settings: Any) -> Iterator[Server]:
    """A server (in-process unless the test needs a process) on ``contract_backend``, with
    ``settings`` on top: its own PostgreSQL database and Redis prefix, dropped after."""
    pg: str | None = None
    redis: dict[str, str] | None = None
    if contract_backend == "postgresql+redis":
        pg = _pg_create()
        redis = _redis_prefix()
        settings = {"database_url": pg, **redis, **settings}
    elif contract_backend == ENCRYPTED_CONTRACT_BACKEND:
        settings = {"token_encryption": True, **settings}
    srv = server_class(request)(tmp_path_factory.mktemp("srv"), settings).start()
    try:
        yield srv
    finally:
        srv.stop()
        if pg is not None:
            _pg_drop(pg)
        if redis is not None:
            _redis_drop(redis["redis_prefix"])


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           contract_backend: str) -> Iterator[Server]:
    with backend_server(request, tmp_path_factory, contract_backend) as srv:
        yield srv


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Any]:
    """A real SMTP server (aiosmtpd on a loopback port) that keeps what it receives."""
    from tests.mailbox import Mailbox

    box = Mailbox().start()
    yield box
    box.stop()


@pytest.fixture
def make_server(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def make(workers: int = 1, workdir: Path | None = None, **settings: Any) -> Server:
        cls = server_class(request, workers)
        srv = cls(workdir or tmp_path_factory.mktemp("srv"), settings, workers).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def user(server: Server) -> tuple[str, str]:
    """A fresh user on the module's server: (username, password)."""
    return server.new_user()


#: The values of ``CI`` that mean "this is a CI run" (any case), as CI services set it
#: (``true``) and as people type it (``1``, ``yes``). scripts/services.sh accepts the same.
CI_TRUTHY = frozenset({"1", "true", "yes", "on"})


def in_ci() -> bool:
    """Whether this is a CI run, where a missing service or tool fails instead of skipping."""
    return os.environ.get("CI", "").strip().lower() in CI_TRUTHY


def _needs(what: str, exc: BaseException) -> None:
    """A missing PostgreSQL/Redis: a failure in CI (see :func:`in_ci`), a skip elsewhere."""
    if in_ci():
        pytest.fail(f"{what} unreachable in CI: {exc}")
    pytest.skip(f"{what} unreachable: {exc}")


def _pg_run(sql: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def _pg_create() -> str:
    """A fresh, empty PostgreSQL database; its URL."""
    import asyncpg

    name = f"authgate_bb_{uuid.uuid4().hex[:12]}"
    try:
        _pg_run(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as exc:
        _needs("PostgreSQL", exc)
    return POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"


def _pg_drop(url: str) -> None:
    _pg_run(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def _redis_prefix() -> dict[str, str]:
    """REDIS_URL plus a key prefix of its own."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except (OSError, redis.RedisError) as exc:
        _needs("Redis", exc)
    finally:
        client.close()
    return {"redis_url": REDIS_URL, "redis_prefix": f"agbb{uuid.uuid4().hex[:10]}"}


def _redis_drop(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    url = _pg_create()
    yield url
    _pg_drop(url)


@pytest.fixture
def redis_settings() -> Iterator[dict[str, str]]:
    """REDIS_URL plus a key prefix of this test's own (deleted afterwards)."""
    settings = _redis_prefix()
    yield settings
    _redis_drop(settings["redis_prefix"])
