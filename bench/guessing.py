"""A flood of random session cookies, with credential-guessing detection off and on (SESS-24).

    .venv/bin/python bench/guessing.py [--duration 8] [--rounds 2]

Each request of ``wrk -t1 -c32`` (CPU 1) is ``GET /auth/me`` with a fresh random
``__Host-authgate`` cookie (a wrk Lua script), all from 127.0.0.1, against ``authgate serve``
(CPU 0) on PostgreSQL + Redis (a fresh database and Redis prefix, both removed after) with
``CREDENTIAL_GUESS_LIMIT=0`` (off: what every release before it did) and with the default
(300 per 60 s). Reported per server, median of the rounds: req/s, p99, the status codes,
the server's CPU µs per request, PostgreSQL statements per request (``pg_stat_database``
``xact_commit`` + ``xact_rollback`` of the bench database: every session look-up is one
transaction) and Redis ``GET`` calls per request (``INFO commandstats`` of the machine's
shared Redis: an upper bound), and lines in the server log per request. Each round starts
each server afresh (nothing blocked yet) and measures after 1 s of warm-up, in which the
``on`` server looks the first 300 cookies up as before and then blocks the address.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import benchlib as bl
import revocation as rv
from benchlib import Server

LUA = """
math.randomseed(os.time())
local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
request = function()
  local t = {}
  for i = 1, 43 do
    local k = math.random(1, #chars)
    t[i] = chars:sub(k, k)
  end
  return wrk.format("GET", "/auth/me", {["Cookie"] = "__Host-authgate=" .. table.concat(t)})
end
"""


def pg_transactions(db_url: str) -> int:
    import asyncpg

    async def read() -> int:
        conn = await asyncpg.connect(db_url)
        try:
            row = await conn.fetchrow("SELECT xact_commit + xact_rollback AS n FROM "
                                      "pg_stat_database WHERE datname = current_database()")
            return int(row["n"])
        finally:
            await conn.close()

    return asyncio.run(read())


def redis_calls() -> int:
    import redis

    stats = redis.Redis.from_url(rv.REDIS_URL).info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_get",
                                                                   "cmdstat_mget"))


def log_lines(server: Server) -> int:
    return len(server.log_path.read_text(errors="replace").splitlines())


def flood(server: Server, script: Path, db_url: str, duration: float) -> dict[str, float]:
    bl.run_wrk(server.url + "/auth/me", connections=32, duration=1, script=script)  # warm-up
    ticks_before = bl.cpu_ticks(server.pid)
    tx_before, redis_before = pg_transactions(db_url), redis_calls()
    lines_before = log_lines(server)
    res = bl.run_wrk(server.url + "/auth/me", connections=32, duration=duration, script=script)
    used = bl.cpu_ticks(server.pid) - ticks_before
    time.sleep(1)  # the statistics collector is updated by the backends within ~0.5 s
    n = max(1, res.requests)
    return {"rps": res.rps, "p50": res.p50_ms, "p99": res.p99_ms, "non2xx": res.non2xx,
            "cpu_us": used / os.sysconf("SC_CLK_TCK") / n * 1e6,
            "pg_per_req": (pg_transactions(db_url) - tx_before) / n,
            "redis_per_req": (redis_calls() - redis_before) / n,
            "log_per_req": (log_lines(server) - lines_before) / n}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=bl.RESULTS / "guessing.md")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="authgate-guessing-"))
    script = scratch / "random-cookie.lua"
    script.write_text(LUA)
    results: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    with ExitStack() as stack:
        db_url = stack.enter_context(rv.pg_database())
        prefix = stack.enter_context(rv.redis_prefix())
        servers: dict[str, Server] = {}
        for name, limit in (("off", {"AUTHGATE_CREDENTIAL_GUESS_LIMIT": "0"}), ("on", {})):
            env = bl.clean_env(AUTHGATE_DATABASE_URL=db_url, AUTHGATE_REDIS_URL=rv.REDIS_URL,
                               AUTHGATE_REDIS_PREFIX=prefix, **limit)
            work = scratch / name
            work.mkdir()
            if name == "off":
                bl.create_user(env, cwd=work)  # migrates the database
            servers[name] = bl.authgate_server(f"authgate-guess-{name}", env, work)
        for _ in range(args.rounds):
            for name, server in servers.items():
                with server:  # a fresh process each round: nothing blocked yet
                    results[name].append(flood(server, script, db_url, args.duration))
    rows = []
    for name, runs in results.items():
        med = {k: bl.median(r[k] for r in runs) for k in runs[0]}
        rows.append([f"CREDENTIAL_GUESS_LIMIT={'0 (off)' if name == 'off' else '300 (default)'}",
                     bl.fmt_int(med["rps"]), f"{med['p50']:.2f}", f"{med['p99']:.1f}",
                     f"{med['cpu_us']:.0f}", f"{med['pg_per_req']:.3f}",
                     f"{med['redis_per_req']:.3f}", f"{med['log_per_req']:.3f}",
                     bl.fmt_int(med["non2xx"])])
    table = bl.md_table(["server", "req/s", "p50 ms", "p99 ms", "server CPU µs/req", "PG tx/req",
                         "Redis GET/req", "log lines/req", "non-2xx"], rows, "lrrrrrrrr")
    command = " ".join(["python", "bench/guessing.py", *(argv or sys.argv[1:])])
    args.out.write_text(f"# A flood of random session cookies (SESS-24)\n\n`{command}`\n\n"
                        f"{bl.info_lines(bl.machine_info())}\n\n{table}\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
