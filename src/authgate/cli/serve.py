"""``authgate serve``: check the configuration, bind, run uvicorn."""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlsplit

import click

from authgate.cli.base import _redact, _run, _settings, config_option, fail, main, test_clock
from authgate.settings import Settings, is_loopback_host


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@config_option
def serve(host: str, port: int, workers: int, config: str | None) -> None:
    """Run the auth server (API, login page, JWKS, forward-auth)."""
    import logging

    import uvicorn

    from authgate.logs import configure as configure_logging
    from authgate.settings import unknown_environment

    settings = _settings(config)
    configure_logging(settings.server.log_format)
    log = logging.getLogger("authgate")
    for warning in unknown_environment():
        log.warning(warning)
    if settings.passwords.hash_preset == "test" and not is_loopback_host(host):
        # PUBLIC_URL defaults to loopback, so the Settings check alone would let a test preset
        # through on a public listener.
        fail(f"PASSWORD_HASH_PRESET=test is for tests: serve it on a loopback address, not "
             f"{host}", 2)
    sock = bind(host, port)
    listening = f"http://{_url_host(host)}:{sock.getsockname()[1]}"
    if "public_url" not in settings.model_fields_set:
        # Where the server listens is where browsers go, unless told otherwise: the Origin
        # check, the login form and the issuer all follow PUBLIC_URL.
        os.environ["AUTHGATE_PUBLIC_URL"] = listening
        settings = _settings(config)
        if host in ("0.0.0.0", "::"):  # noqa: S104 - naming the wildcard, not binding it
            log.warning("PUBLIC_URL is not set; using %s. Set AUTHGATE_PUBLIC_URL to the "
                        "address browsers use.", listening)
    elif _plain_http_problem(settings):
        sock.close()
        fail(str(_plain_http_problem(settings)), 2)
    elif not settings.server.trusted_proxies and not _same_place(settings.server.public_origin,
                                                                 listening):
        log.warning("PUBLIC_URL is %s but the server listens on %s and TRUSTED_PROXIES is "
                    "empty: browsers that open %s will fail the Origin check and the login "
                    "form.", settings.server.public_origin, listening, listening)
    if settings.mail.smtp_url is None and not is_loopback_host(
            urlsplit(settings.server.public_origin).hostname or ""):
        log.warning("SMTP_URL is not set: verification and password-reset links go to this "
                    "log instead of the users' mailboxes. Set AUTHGATE_SMTP_URL.")
    _run(config, _preflight, redis_required=True)  # database migrated, Redis reachable
    if config:
        os.environ["AUTHGATE_CONFIG"] = os.path.abspath(config)
    log.info("authgate serving on %s (database %s, %d worker(s))", listening,
             _redact(settings.storage.database_url), workers)
    server_config = uvicorn.Config("authgate.cli.serve:server_app", factory=True,
                                   workers=workers, access_log=False, log_level="warning",
                                   log_config=None,  # authgate.logs formats every line
                                   proxy_headers=False, server_header=False,
                                   timeout_graceful_shutdown=5,
                                   # A worker busy starting up on a loaded machine is not
                                   # dead: uvicorn's 5 s default replaced them in a loop.
                                   timeout_worker_healthcheck=30)
    server = uvicorn.Server(server_config)
    if workers > 1:
        from uvicorn.supervisors import Multiprocess

        Multiprocess(server_config, sockets=[sock]).run()
    else:
        server.run(sockets=[sock])


def server_app() -> Any:
    """uvicorn's ``--factory`` entry, called in every worker (``--workers N`` starts N fresh
    processes that inherit the environment): the server app, with the test harness's clock
    when ``AUTHGATE_TEST_CLOCK_FILE`` is set (test-only; see :func:`test_clock`)."""
    import gc

    from authgate.web.app import app_factory

    app = app_factory(clock=test_clock())
    # Everything made so far (modules, classes, the app: ~130,000 objects) lives as long as
    # the process: out of the cyclic collector's sight, a full collection no longer walks it
    # (with 100,000 cached sessions such a pause took 220-375 ms with them, 160-230 without).
    gc.collect()
    gc.freeze()
    return app


async def _preflight(gate: Any) -> None:
    """What the server's start-up needs, checked before uvicorn starts so that a failure is
    one line on stderr (inside uvicorn it would be a traceback): ``_run`` has started a gate
    (database reachable and migrated, keys loaded, Redis reachable when configured)."""


def bind(host: str, port: int) -> socket.socket:
    """The listening socket of `authgate serve` (and of the test suite's in-process server);
    a clean CLI line when the address cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "port in use" if exc.errno == 98 else (exc.strerror or str(exc))
        fail(f"cannot listen on {host}:{port}: {reason}")
    # Responses go out at once: without TCP_NODELAY a response written in two parts waits
    # for the client's delayed ACK (40 ms on Linux). uvloop sets it on each connection;
    # asyncio's loop (uvicorn without uvloop) does not, for a socket made with proto 0 as
    # this one. Accepted connections inherit it from the listening socket.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):  # noqa: S104 - naming the wildcard, not binding it
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _same_place(origin: str, listening: str) -> bool:
    """Whether a browser at ``origin`` reaches the server listening at ``listening``: the
    same port, and the same host (every loopback spelling counts as one)."""

    a, b = urlsplit(origin), urlsplit(listening)
    if a.scheme != "http" or a.port != b.port:
        return False
    return a.hostname == b.hostname or (a.hostname in LOOPBACK and b.hostname in LOOPBACK)


def _plain_http_problem(settings: Settings) -> str | None:
    """Secure cookies over plain HTTP on a real network: the browser drops every cookie and
    the user sees "form expired". Loopback is a secure context, so it is fine there."""

    parts = urlsplit(settings.server.public_url)
    if settings.cookies.secure and parts.scheme == "http" and parts.hostname not in LOOPBACK:
        return (f"PUBLIC_URL {settings.server.public_origin} is plain HTTP on a non-loopback host, "
                "where browsers drop the Secure session cookie: put HTTPS in front (and set "
                "AUTHGATE_PUBLIC_URL=https://...) or, for development only, set "
                "AUTHGATE_COOKIE_SECURE=false")
    return None
