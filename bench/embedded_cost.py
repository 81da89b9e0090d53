"""In-process cost of authgate's FastAPI dependencies and Starlette middleware, in µs.

    .venv/bin/python bench/embedded_cost.py [--requests 1000] [--rounds 15]

Drives the ASGI apps of bench/embedded_app.py directly (no socket, no HTTP parser, no
wrk), so what is left is the framework's routing plus authentication: each route of the
same app answers the same small JSON, so route - ``/open`` is what auth adds per request.
Rounds are interleaved over the routes; CPU time of the process (``time.process_time``:
time other processes take is not counted, though they still cool the caches); the table
shows the minimum over rounds (interference only ever adds) and the median. Steadier than
wrk on a shared machine. The HTTP server (uvicorn, httptools) adds its own cost to every
route alike in bench/run.py's numbers, so there the ratios are closer to 1 than here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("AUTHGATE_DATABASE_URL",
                      f"sqlite:///{tempfile.mkdtemp(prefix='authgate-cost-')}/cost.db")

import embedded_app as ea


def scope_for(path: str, headers: dict[str, str]) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
            "headers": [(b"host", b"127.0.0.1:8000")]
            + [(k.lower().encode(), v.encode()) for k, v in headers.items()]}


async def call(app: Any, path: str, headers: dict[str, str]) -> int:
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope_for(path, headers), receive, send)
    return status


async def timed(app: Any, path: str, headers: dict[str, str], n: int) -> float:
    scope = scope_for(path, headers)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    start = time.process_time()
    for _ in range(n):
        await app(dict(scope), receive, send)
    return (time.process_time() - start) / n * 1e6


async def main(n: int, rounds: int) -> None:
    gate = ea.gate
    async with gate.lifespan():
        await gate.users.create_user("alice", "correct horse battery staple!", ["reports:read"])
        value, _, _ = await gate.sessions.login("alice", "correct horse battery staple!")
        pair = await gate.grants.password_grant("alice", "correct horse battery staple!")
        cookie = {"Cookie": f"{gate.settings.session_cookie}={value}"}
        bearer = {"Authorization": f"Bearer {pair.access_token}"}
        cases = [
            ("FastAPI", "/open", ea.fastapi_app, {}),
            ("FastAPI", "/nullauth", ea.fastapi_app, cookie),
            ("FastAPI", "/session", ea.fastapi_app, cookie),
            ("FastAPI", "/bearer", ea.fastapi_app, bearer),
            ("FastAPI", "/any", ea.fastapi_app, cookie),
            ("FastAPI", "/scoped", ea.fastapi_app, bearer),
            ("FastAPI", "/before/session", ea.fastapi_app, cookie),
            ("FastAPI", "/before/bearer", ea.fastapi_app, bearer),
            ("FastAPI", "/before/scoped", ea.fastapi_app, bearer),
            ("Starlette", "/open", ea.starlette_app, {}),
            ("Starlette + middleware", "/open", ea.starlette_mw, {}),
            ("Starlette + middleware", "/session", ea.starlette_mw, cookie),
            ("Starlette + middleware", "/bearer", ea.starlette_mw, bearer),
            ("Starlette + null auth", "/session", ea.starlette_nullauth, cookie),
        ]
        for stack, path, app, headers in cases:
            status = await call(app, path, headers)
            if status != 200:
                raise SystemExit(f"{stack} {path} answered {status}")
        times: dict[int, list[float]] = {i: [] for i in range(len(cases))}
        for _ in range(rounds):
            for i, (_, path, app, headers) in enumerate(cases):
                times[i].append(await timed(app, path, headers, n))
        starlette_open = cases.index(("Starlette", "/open", ea.starlette_app, {}))
        floor_of = {"FastAPI": 0, "Starlette": starlette_open,
                    "Starlette + middleware": starlette_open,
                    "Starlette + null auth": starlette_open}
        print(f"{'stack':24} {'route':16} {'min µs':>7} {'+ µs':>6} {'median µs':>9} {'+ µs':>6}")
        for i, (stack, path, _, _) in enumerate(cases):
            base = times[floor_of[stack]]
            lo, mid = min(times[i]), statistics.median(times[i])
            print(f"{stack:24} {path:16} {lo:7.1f} {lo - min(base):+6.1f} {mid:9.1f} "
                  f"{mid - statistics.median(base):+6.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
