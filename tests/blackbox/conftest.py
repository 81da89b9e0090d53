"""Fixtures for the black-box suite: module-scoped servers with non-default settings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import Server


@pytest.fixture(scope="module")
def module_server_factory(
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    """Start servers with given settings that live for the whole test module."""
    started: list[Server] = []

    def make(**settings: Any) -> Server:
        srv = Server(tmp_path_factory.mktemp("srv"), settings).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()
