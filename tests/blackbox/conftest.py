"""Fixtures for the black-box suite: servers with non-default settings, shared accounts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import Server, server_class
from tests.helpers import AuthClient


@pytest.fixture(scope="module")
def module_server_factory(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    """Start servers with given settings that live for the whole test module."""
    started: list[Server] = []

    def make(**settings: Any) -> Server:
        srv = server_class(request)(tmp_path_factory.mktemp("srv"), settings).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture(scope="module")
def account(server: Server) -> tuple[str, str]:
    """One registered user per module, for tests that only need *some* valid account:
    (username, password)."""
    from tests.blackbox.support import register

    username, password, _ = register(server)
    return username, password


@pytest.fixture(scope="module")
def shared_client(server: Server, account: tuple[str, str]) -> Iterator[AuthClient]:
    """A client signed in once per module, for tests whose requests must all be refused
    (each such test checks the session is still alive afterwards)."""
    client = server.client()
    assert client.login(*account).status_code == 200
    yield client
    client.close()


#: One server with tuned settings shared by several test modules (starting servers is most
#: of the suite's time). Each module that uses it creates its own users and sessions, so the
#: clock moves of one module cannot hurt another.
TUNED = {
    "session_idle_ttl": 90,  # with the default 60 s SESSION_TOUCH_INTERVAL
    "session_absolute_ttl": 600,
    "remember_me_ttl": 3000,
    "max_sessions_per_user": 2,
    "allowed_origins": "https://app.example.test,https://admin.example.test:8443",
    "password_min_length": 15,
}


@pytest.fixture(scope="session")
def tuned(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server running :data:`TUNED`, for the whole session."""
    srv = server_class(request)(tmp_path_factory.mktemp("tuned"), dict(TUNED)).start()
    yield srv
    srv.stop()
