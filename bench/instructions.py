"""Instructions per protected request through the server's ASGI app, counted by callgrind.

    .venv/bin/python bench/instructions.py            # runs itself under valgrind twice

Wall-clock numbers on this shared 2-core machine move by 10-20 % between runs; instruction
counts do not (the same binary, inputs and environment give the same count whatever else the
machine is doing). The script builds the app ``authgate serve`` runs
(:func:`authgate.web.app.create_server_app`), signs a user in, then sends ``--requests``
``GET /auth/me`` with the session cookie and as many with a bearer token straight into the
ASGI app (no socket, no HTTP parser); ``bearer-encrypted`` is the bearer case on an app with
``TOKEN_ENCRYPTION=true`` (a nested JWT, decrypted once, then answered from the
verified-token cache like a signed one); ``session-mfa`` is the session of a user who signed
in with an authenticator app (its record carries ``amr``); ``api-key`` is an API key
(``Authorization: Bearer ag_…``, checked from memory like a session). Run once with 0
requests and once with N: the difference over N is what one request costs, start-up and
import excluded. Compare two commits by running it on each (``git stash`` /
``git checkout``) on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

PASSWORD = "correct horse battery staple!"


def scope_for(method: str, path: str, headers: dict[str, str]) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
            "headers": [(b"host", b"127.0.0.1:8000")]
            + [(k.lower().encode(), v.encode()) for k, v in headers.items()]}


async def call(app: Any, method: str, path: str, headers: dict[str, str],
               body: bytes = b"") -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    out: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"], out["headers"] = message["status"], message.get("headers", [])
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    await app(scope_for(method, path, headers), receive, send)
    return out["status"], out["headers"], out["body"]


async def run(n: int, kind: str) -> None:
    import orjson

    from authgate import AuthGate
    from authgate.settings import Settings
    from authgate.web.app import create_server_app

    workdir = Path(tempfile.mkdtemp(prefix="authgate-instr-"))
    encrypted = {"token_encryption": True} if kind == "bearer-encrypted" else {}
    settings = Settings(database_url=f"sqlite:///{workdir / 'instr.db'}",
                        public_url="https://auth.example", session_touch_interval=10**9,
                        **encrypted)
    secret = ""
    async with AuthGate(settings) as admin:
        alice = await admin.users.create_user("alice", PASSWORD)
        if kind == "session-mfa":  # an authenticator app: the session carries amr=[pwd,otp,mfa]
            import pyotp

            secret = (await admin.factors.enrol(alice, PASSWORD)).secret
            await admin.factors.confirm(alice, pyotp.TOTP(secret).now())

    app = create_server_app(settings)
    started, stop = asyncio.Event(), asyncio.Event()

    async def lifespan_receive() -> dict[str, Any]:
        if not started.is_set():
            return {"type": "lifespan.startup"}
        await stop.wait()
        return {"type": "lifespan.shutdown"}

    async def lifespan_send(message: dict[str, Any]) -> None:
        if message["type"] == "lifespan.startup.complete":
            started.set()
        elif message["type"].endswith("failed"):
            raise SystemExit(message.get("message", "lifespan failed"))

    life = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}},
                                   lifespan_receive, lifespan_send))
    await started.wait()
    creds = orjson.dumps({"username": "alice", "password": PASSWORD})
    json_headers = {"Content-Type": "application/json", "Origin": "https://auth.example"}
    status, headers, body = await call(app, "POST", "/auth/login", json_headers, creds)
    if kind == "session-mfa":  # the second step, with the next time step's code (no replay)
        import time

        import pyotp

        code = pyotp.TOTP(secret).at(time.time() + 30)
        step = orjson.dumps({"mfa_token": orjson.loads(body)["mfa_token"], "code": code})
        status, headers, body = await call(app, "POST", "/auth/login/mfa", json_headers, step)
    cookie = next(v.decode().split(";")[0] for k, v in headers if k == b"set-cookie"
                  and v.startswith(settings.session_cookie.encode()))
    cases = {"session": {"Cookie": cookie}, "session-mfa": {"Cookie": cookie}}
    if kind != "session-mfa":
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        status, _, body = await call(app, "POST", "/auth/token", form,
                                     b"grant_type=password&username=alice&password="
                                     + PASSWORD.replace(" ", "+").encode())
        token = orjson.loads(body)["access_token"]
        cases["bearer"] = cases["bearer-encrypted"] = {"Authorization": f"Bearer {token}"}
        if (token.count(".") == 4) != bool(encrypted):
            raise SystemExit(f"{kind}: unexpected token shape {token[:40]}...")
        # An API key (made with the session, as the account page would): ``ag_`` bearer.
        csrf = orjson.loads((await call(app, "GET", "/auth/me", cases["session"]))[2])[
            "csrf_token"]
        status, _, body = await call(app, "POST", "/auth/api-keys", {
            **json_headers, **cases["session"], "X-CSRF-Token": csrf},
            orjson.dumps({"name": "bench"}))
        if status != 201:
            raise SystemExit(f"POST /auth/api-keys answered {status}: {body!r}")
        cases["api-key"] = {"Authorization": f"Bearer {orjson.loads(body)['key']}"}
    for headers_ in cases.values():
        status, _, body = await call(app, "GET", "/auth/me", headers_)
        if status != 200:
            raise SystemExit(f"/auth/me answered {status}: {body!r}")
    # Freeze the freshness clock: the revocation watcher's catch-up depends on wall time,
    # and under valgrind (50x slower) it would add database polls in proportion to how
    # loaded the machine is. The loop never yields to the event loop, so no background
    # task runs inside it either: what is counted is the requests.
    import authgate.hotstate

    frozen = authgate.hotstate._monotonic()
    authgate.hotstate._monotonic = lambda: frozen  # type: ignore[attr-defined]
    for _ in range(n):
        await call(app, "GET", "/auth/me", cases[kind])
    stop.set()
    await life


def count(n: int, kind: str) -> int:
    out = Path(tempfile.mkdtemp(prefix="authgate-cg-")) / "callgrind.out"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                    sys.executable, __file__, "--inner", str(n), "--kind", kind], env=env,
                   check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    summary = re.search(r"^summary: (\d+)", out.read_text(), re.M) or \
        re.search(r"^totals: (\d+)", out.read_text(), re.M)
    assert summary is not None, "no total in the callgrind output"
    return int(summary.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--inner", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="session", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner is not None:
        asyncio.run(run(args.inner, args.kind))
        return
    base = count(0, "session")
    for kind in ("session", "session-mfa", "bearer", "bearer-encrypted", "api-key"):
        # these start differently (an encryption key; a TOTP enrolment and a two-step
        # sign-in): their own baseline
        zero = count(0, kind) if kind in ("bearer-encrypted", "session-mfa") else base
        per = (count(args.requests, kind) - zero) / args.requests
        print(f"{kind:16} GET /auth/me: {per:,.0f} instructions per request "
              f"({args.requests} requests)")


if __name__ == "__main__":
    main()
