"""A cold working set on PostgreSQL + Redis, over HTTP (issue 15, item 5).

    .venv/bin/python bench/coldset.py [--sessions 1000000] [--families 100000]
                                      [--active 100000] [--control 1000] [--duration 8]
                                      [--rounds 2] [--workers 1,2]

Set-up (a fresh PostgreSQL database ``authgate_bench_<random>`` on 127.0.0.1:5432, dropped
at the end; a private ``AUTHGATE_REDIS_PREFIX`` on 127.0.0.1:6379, its keys deleted at the
end): ``authgate users create`` migrates it, then 1,000 users (copies of that row),
``--sessions`` session rows and ``--families`` token families are written with PostgreSQL
``COPY`` (asyncpg), and one access token per family is signed in this process through the
engine (``engine.tokens.issue``) with the keys the server will load from the same database.
Every 10th session is *active* (``--active`` of them); ``--control`` other sessions and
tokens make the control set that fits any cache. Their cookie values / tokens go to files
that a wrk Lua script reads in ``init()``; each request picks one at random.

Cells (``wrk -t1 -c32``, server ``taskset -c 0``, wrk ``taskset -c 1``, each wrk run
<= 10 s), ``GET /auth/me``:

1. in-process breakdown of a cold session look-up, one call at a time (Redis GET, the
   PostgreSQL SELECT, Redis SET, user SELECT, last-seen UPDATE, the whole
   ``session_principal``), with the pool as authgate configures it (a connection idle
   for over a second is pinged first) and (bench-only) with ``pool_pre_ping``, a ping on
   every checkout, as before de2d7df;
2. server 1 (nothing in Redis, nothing in the process): ``session pg-cold``; ``bearer
   cold``, a walk over every active token (so the cache reaches its steady state),
   ``--rounds`` x ``bearer warm``, ``bearer control`` (1 s warm-up first);
3. the active sessions are written to Redis as a login leaves them; server 2 (fresh
   process): ``session redis-cold``, a walk over the active sessions (``--walk`` s at
   most), warm rounds, control;
4. the other ``--workers`` values: the same as 3 without the walk, then the bearer cells;
5. ``SESSION_TOUCH_INTERVAL=3600`` + ``SESSION_IDLE_TTL=43200`` (the interval is clamped to
   a tenth of the idle TTL): ``session redis-cold`` with no last-seen write due;
6. (one worker, unless ``--no-patch``) the bearer cells on a server whose verified-token
   cache is 256 MiB instead of 64 MiB (``AUTHGATE_TOKEN_CACHE_MB=256``, the setting this
   benchmark led to; its first run patched the constant).

Each cell reports req/s, p50, p90, p99, non-2xx (wrk's counter: must be 0), socket
errors, the session/token cache hit ratio (``authgate_cache_lookups_total`` deltas, one
worker only) and the RSS of each worker after it. Results: bench/results/coldset.md (+ raw
JSON in results/raw/, git-ignored; ``--from-json`` rewrites the report from it).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import benchlib as bl
import orjson
import revocation as rv
from benchlib import BenchError, Server

TTL = 12 * 3600
PROBE = 1200  # sessions for the in-process breakdown (neither active nor control)
USERS = 1000
COOKIE = "__Host-authgate"
ISSUER = "https://authgate-bench.invalid"  # the server's too: not its PUBLIC_URL default
TOUCH_INTERVAL = 3600  # > the whole run: no last-seen write during it (idle TTL 12 h)
BIG_VERIFIED_BYTES = 256 * 1024 * 1024

LUA = """\
local values = {{}}
local n = 0
function init(args)
  for line in io.lines("{path}") do n = n + 1; values[n] = line end
  math.randomseed(os.time() + {seed})
end
function request()
  local v = values[math.random(n)]
  return wrk.format(nil, nil, {{{header}}})
end
"""


def lua_script(path: Path, values: Path, header: str) -> Path:
    """A wrk script sending each request with a random line of ``values``."""
    hdr = (f'Cookie = "{COOKIE}=" .. v' if header == "cookie"
           else 'Authorization = "Bearer " .. v')
    path.write_text(LUA.format(path=values, header=hdr, seed=secrets.randbelow(1000)))
    return path


# -- population ---------------------------------------------------------------------------


def asyncpg_url(db_url: str) -> str:
    return db_url.replace("postgresql+asyncpg://", "postgresql://")


async def populate(db_url: str, n_sessions: int, n_families: int, work: Path,
                   active_every: int, n_control: int) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(asyncpg_url(db_url))
    timings: dict[str, float] = {}
    try:
        alice = await conn.fetchrow("SELECT * FROM users WHERE username = 'alice'")
        if alice is None:
            raise BenchError("no user alice")
        now = time.time()
        users = [alice["id"]] + [uuid.uuid4().hex for _ in range(USERS - 1)]
        cols = list(alice.keys())
        rows = []
        for i, uid in enumerate(users[1:], start=1):
            row = dict(alice)
            row.update(id=uid, username=f"user{i}", username_key=f"user{i}")
            rows.append(tuple(row[c] for c in cols))
        await conn.copy_records_to_table("users", records=rows, columns=cols)

        started = time.perf_counter()
        scols = ["id", "token_hash", "user_id", "csrf_token", "created_at", "last_seen_at",
                 "expires_at", "idle_ttl", "remember", "ip", "user_agent"]
        active: list[str] = []
        active_rows: list[tuple[Any, ...]] = []
        control: list[str] = []
        probe: list[tuple[str, tuple[Any, ...]]] = []
        batch = 50_000
        done = 0
        while done < n_sessions:
            records = []
            for i in range(done, min(n_sessions, done + batch)):
                value = secrets.token_urlsafe(32)
                rec = (uuid.uuid4().hex, hashlib.sha256(value.encode()).hexdigest(),
                       users[i % USERS], secrets.token_urlsafe(32), now, now,
                       now + TTL, TTL, False, "127.0.0.1", "authgate-bench")
                records.append(rec)
                if i % active_every == 0:
                    active.append(value)
                    active_rows.append(rec)
                elif i % active_every == 1 and len(control) < n_control:
                    control.append(value)
                elif i % active_every == 2 and len(probe) < PROBE:
                    probe.append((value, rec))
            await conn.copy_records_to_table("sessions", records=records, columns=scols)
            done += len(records)
        timings["sessions_s"] = time.perf_counter() - started

        started = time.perf_counter()
        families = [(uuid.uuid4().hex, users[i % USERS]) for i in range(n_families + n_control)]
        fcols = ["id", "user_id", "scope", "created_at", "last_seen_at", "expires_at",
                 "revoked_at", "ip", "user_agent"]
        await conn.copy_records_to_table(
            "token_families", columns=fcols,
            records=[(fid, uid, "", now, now, now + TTL, None, "127.0.0.1", "authgate-bench")
                     for fid, uid in families])
        timings["families_s"] = time.perf_counter() - started
        await conn.execute("ANALYZE")
        size = await conn.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await conn.close()

    started = time.perf_counter()
    tokens = await issue_tokens(db_url, families)
    timings["tokens_s"] = time.perf_counter() - started
    files = {
        "session_active": work / "session_active.txt",
        "session_control": work / "session_control.txt",
        "bearer_active": work / "bearer_active.txt",
        "bearer_control": work / "bearer_control.txt",
    }
    files["session_active"].write_text("\n".join(active) + "\n")
    files["session_control"].write_text("\n".join(control) + "\n")
    files["bearer_active"].write_text("\n".join(tokens[:n_families]) + "\n")
    files["bearer_control"].write_text("\n".join(tokens[n_families:]) + "\n")
    return {"timings": timings, "files": files, "active": len(active),
            "active_rows": active_rows, "probe": probe, "scols": scols,
            "control": len(control), "db_bytes": int(size),
            "token_bytes": sum(map(len, tokens)) / max(1, len(tokens))}


async def issue_tokens(db_url: str, families: list[tuple[str, str]]) -> list[str]:
    """One access token per family, signed by an in-process engine on the same database (so
    with the signing key the server will load)."""
    from authgate.engine import Engine
    from authgate.settings import Settings

    engine = Engine(Settings(database_url=db_url, access_token_ttl=3600, issuer=ISSUER))
    await engine.start(migrate=False)
    try:
        now = time.time()
        return [engine.tokens.issue(sub=uid, scope="", roles=[], family_id=fid, now=now)[0]
                for fid, uid in families]
    finally:
        await engine.stop()


async def fill_redis(db_url: str, prefix: str, rows: list[tuple[Any, ...]],
                     cols: list[str]) -> float:
    """Write the active sessions into Redis as ``RedisSessions.put_session`` does (what a
    login leaves there), under the epoch the servers use: a restarted process then misses
    only its own cache."""
    from authgate.engine import Engine
    from authgate.settings import Settings

    started = time.perf_counter()
    engine = Engine(Settings(database_url=db_url, redis_url=rv.REDIS_URL, redis_prefix=prefix,
                             issuer=ISSUER))
    await engine.start(migrate=False)
    try:
        assert engine.redis is not None
        sessions = engine.redis.sessions
        for i in range(0, len(rows), 5000):
            async with engine.redis.client.pipeline(transaction=False) as pipe:
                for row in rows[i:i + 5000]:
                    rec = dict(zip(cols, row, strict=True))
                    rec["written_at"] = rec["last_seen_at"]
                    pipe.set(sessions.key(rec["token_hash"]), orjson.dumps(rec), ex=TTL,
                             nx=True)
                await pipe.execute()
    finally:
        await engine.stop()
    return time.perf_counter() - started


def stats_us(ns: list[int]) -> dict[str, float]:
    us = [n / 1000 for n in ns]
    return {"n": len(us), "p50": bl.median(us), "p99": bl.percentile(us, 99),
            "mean": sum(us) / len(us) if us else float("nan")}


async def clock(parts: dict[str, list[int]], name: str,
                call: Callable[..., Awaitable[object]], *args: Any) -> None:
    begin = time.perf_counter_ns()
    await call(*args)
    parts[name].append(time.perf_counter_ns() - begin)


async def breakdown(db_url: str, prefix: str, probe: list[tuple[str, tuple[Any, ...]]],
                    cols: list[str]) -> dict[str, Any]:
    """In this process, one call at a time: what a cold session look-up spends on each
    round trip (Redis GET, the PostgreSQL SELECT, the Redis SET, the last-seen UPDATE), and
    the whole ``session_principal`` on sessions no cache holds — with the pool as
    authgate configures it, and (bench-only) with ``pool_pre_ping`` (a ping per checkout,
    as before de2d7df)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from authgate.engine import Engine
    from authgate.models import SessionRecord
    from authgate.settings import Settings

    out: dict[str, Any] = {}
    quarter = len(probe) // 4
    for pre_ping, part in ((False, 0), (True, 2)):
        engine = Engine(Settings(database_url=db_url, redis_url=rv.REDIS_URL,
                                 redis_prefix=prefix, issuer=ISSUER))
        if pre_ping:
            await engine.db.engine.dispose()
            engine.db.engine = create_async_engine(
                engine.db.url, pool_size=10, max_overflow=10, pool_pre_ping=True,
                pool_timeout=5, connect_args={"timeout": 5, "command_timeout": 10})
        await engine.start(migrate=False)
        assert engine.redis is not None
        try:
            parts: dict[str, list[int]] = {k: [] for k in (
                "redis GET (miss)", "PG SELECT session", "Redis SET", "PG SELECT user",
                "PG UPDATE last_seen", "session_principal (cold)")}
            comp = probe[part * quarter:(part + 1) * quarter]
            whole = probe[(part + 1) * quarter:(part + 2) * quarter]
            now = time.time()
            for _value, row in comp:
                rec = SessionRecord(**dict(zip(cols, row, strict=True)))
                await clock(parts, "redis GET (miss)", engine.redis.get_session,
                            rec.token_hash)
                await clock(parts, "PG SELECT session", engine.records.get_session,
                            rec.token_hash)
                await clock(parts, "Redis SET", engine.redis.put_session, rec, now)
                await clock(parts, "PG SELECT user", engine.records.get_user, rec.user_id)
                await clock(parts, "PG UPDATE last_seen",
                            engine.records.touch_sessions, {rec.id: now})
            for value, _row in whole:
                begin = time.perf_counter_ns()
                if await engine.sessions.session_principal(value) is None:
                    raise BenchError("a probe session was not found")
                parts["session_principal (cold)"].append(time.perf_counter_ns() - begin)
            out["pre_ping" if pre_ping else "idle_ping"] = {
                k: stats_us(v) for k, v in parts.items()}
        finally:
            await engine.stop()
    return out


# -- cells --------------------------------------------------------------------------------


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[2]) == pgid:
                pids.append(int(entry))
    return sorted(pids)


def worker_rss_mb(server: Server, workers: int) -> list[float]:
    """RSS (MB) of each worker: the serving process with one worker, the supervisor's
    children with several (the supervisor itself is left out)."""
    pids = group_pids(server.pid)
    rss = []
    cmdlines: dict[int, bytes] = {}
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        cmdlines[pid] = cmdline
        if b"taskset" in cmdline.split(b"\0")[0]:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        if match:
            rss.append((pid, int(match.group(1)) / 1024))
    if workers > 1:  # the spawned workers, not the supervisor or the resource tracker
        rss = [(pid, r) for pid, r in rss if b"spawn_main" in cmdlines.get(pid, b"")]
    return [round(r, 1) for _, r in rss]


def lookups(base: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in bl.metrics(base).items():
        m = re.match(r'authgate_cache_lookups_total\{cache="(\w+)",result="(\w+)"\}', key)
        if m:
            out[f"{m.group(1)}:{m.group(2)}"] = value
    return out


def hit_ratio(before: dict[str, float], after: dict[str, float], cache: str) -> float:
    hit = after.get(f"{cache}:hit", 0) - before.get(f"{cache}:hit", 0)
    miss = after.get(f"{cache}:miss", 0) - before.get(f"{cache}:miss", 0)
    return hit / (hit + miss) if hit + miss else float("nan")


def cell(server: Server, name: str, script: Path, duration: float, workers: int,
         config: str) -> dict[str, Any]:
    cache = "session" if name.startswith("session") else "token"
    before = lookups(server.url) if workers == 1 else {}
    res = bl.run_wrk(server.url + "/auth/me", connections=32, duration=duration,
                     script=script)
    after = lookups(server.url) if workers == 1 else {}
    row = {"config": config, "cell": name, "workers": workers, **res.as_dict(),
           "errors": res.errors,
           "hit": hit_ratio(before, after, cache) if workers == 1 else float("nan"),
           "rss_mb": worker_rss_mb(server, workers), "loadavg": loadavg()}
    bl.log(f"  {config:10} {name:18} {res.rps:8.0f} req/s  p50 {res.p50_ms:6.2f}  "
           f"p99 {res.p99_ms:6.2f} ms  non2xx {res.non2xx}  err {res.errors}  "
           f"hit {row['hit']:.2f}  rss {row['rss_mb']}  load {row['loadavg']}")
    if res.non2xx or res.errors:
        bl.log(f"  !! {name}: {res.non2xx} non-2xx, socket errors {res.socket_errors}")
    return row


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def check_one(server: Server, files: dict[str, Path]) -> None:
    """One session and one token of each set answer 200, before any wrk runs."""
    for key, path in files.items():
        value = path.read_text().split("\n", 1)[0]
        headers = ({"Cookie": f"{COOKIE}={value}"} if key.startswith("session")
                   else {"Authorization": f"Bearer {value}"})
        status, _, body = bl.request("GET", server.url + "/auth/me", headers=headers)
        if status != 200:
            raise BenchError(f"{key}: GET /auth/me answered {status}: {body[:300]!r}")


def warm_up(server: Server, script: Path, seconds: int = 1) -> None:
    bl.run_wrk(server.url + "/auth/me", connections=32, duration=seconds, script=script)


def patched_server(name: str, env: dict[str, str], work: Path) -> Server:
    """``authgate serve`` (one worker) with a bigger verified-token cache
    (``TOKEN_CACHE_MB``)."""
    return bl.authgate_server(name, {**env, "AUTHGATE_TOKEN_CACHE_MB":
                                     str(BIG_VERIFIED_BYTES >> 20)}, work)


WALK = """\
local values = {}
local n, i = 0, %d
function init(args)
  for line in io.lines("%s") do n = n + 1; values[n] = line end
end
function request()
  i = i %% n + 1
  local v = values[i]
  return wrk.format(nil, nil, {%s})
end
"""


def walk(server: Server, values: Path, work: Path, seconds: float,
         kind: str = "session") -> dict[str, Any]:
    """Every active session once, in order, in wrk runs of at most 10 s (each starting where
    the last stopped) until all were asked or ``seconds`` are spent: fills the process's
    cache so that the warm rounds after it measure the steady state."""
    total = sum(1 for _ in values.open())
    script = work / "walk.lua"
    done, spent, non2xx = 0, 0.0, 0
    while done < total and spent < seconds:
        hdr = (f'Cookie = "{COOKIE}=" .. v' if kind == "session"
               else 'Authorization = "Bearer " .. v')
        script.write_text(WALK % (done, values, hdr))
        res = bl.run_wrk(server.url + "/auth/me", connections=32,
                         duration=min(10.0, seconds - spent), script=script)
        done += res.requests
        spent += res.duration_s
        non2xx += res.non2xx
    bl.log(f"  walk ({kind}): {done:,} requests of {total:,} in {spent:.0f} s, "
           f"non2xx {non2xx}")
    return {"kind": kind, "server": server.name, "requests": done, "active": total,
            "seconds": spent, "non2xx": non2xx}


def kind_cells(server: Server, scripts: dict[str, Path], args: argparse.Namespace,
               workers: int, config: str, kind: str, cold: str | None = None,
               before_warm: Callable[[], object] | None = None) -> list[dict[str, Any]]:
    rows = [cell(server, f"{kind} {cold or 'cold'}", scripts[f"{kind}_active"],
                 args.duration, workers, config)]
    if before_warm is not None:
        before_warm()
    for r in range(args.rounds):
        rows.append(cell(server, f"{kind} warm {r + 1}", scripts[f"{kind}_active"],
                         args.duration, workers, config))
    warm_up(server, scripts[f"{kind}_control"])
    rows.append(cell(server, f"{kind} control", scripts[f"{kind}_control"], args.duration,
                     workers, config))
    return rows


def run(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    result: dict[str, Any] = {"args": {k: str(v) if isinstance(v, Path) else v
                                       for k, v in vars(args).items()},
                              "rows": rows, "walks": [], "log_errors": {}}
    with ExitStack() as stack:
        db_url = stack.enter_context(rv.pg_database())
        prefix = stack.enter_context(rv.redis_prefix())
        env = bl.clean_env(AUTHGATE_DATABASE_URL=db_url, AUTHGATE_REDIS_URL=rv.REDIS_URL,
                           AUTHGATE_REDIS_PREFIX=prefix, AUTHGATE_ACCESS_TOKEN_TTL="3600",
                           AUTHGATE_ISSUER=ISSUER)
        bl.create_user(env, cwd=scratch)
        bl.log(f"populating {args.sessions:,} sessions, {args.families:,} token families")
        started = time.perf_counter()
        pop = asyncio.run(populate(db_url, args.sessions, args.families, scratch,
                                   max(1, args.sessions // args.active), args.control))
        result["populate"] = {k: v for k, v in pop.items()
                              if k not in ("files", "active_rows", "probe", "scols")}
        result["populate"]["total_s"] = time.perf_counter() - started
        bl.log(f"populated in {result['populate']['total_s']:.0f} s: {pop['timings']}, "
               f"db {pop['db_bytes'] / 1e6:.0f} MB, token {pop['token_bytes']:.0f} B")
        result["breakdown"] = asyncio.run(breakdown(db_url, prefix, pop["probe"],
                                                    pop["scols"]))
        for variant, parts in result["breakdown"].items():
            bl.log(f"  breakdown {variant}: " + ", ".join(
                f"{k} {v['p50']:.0f}/{v['p99']:.0f} us" for k, v in parts.items()))
        scripts = {k: lua_script(scratch / f"{k}.lua", v,
                                 "cookie" if k.startswith("session") else "bearer")
                   for k, v in pop["files"].items()}

        def fill() -> None:
            took = asyncio.run(fill_redis(db_url, prefix, pop["active_rows"], pop["scols"]))
            result["populate"]["redis_fill_s"] = took
            bl.log(f"  {len(pop['active_rows']):,} active sessions written to Redis in "
                   f"{took:.1f} s")

        def walk_active(server: Server, kind: str = "session") -> Callable[[], object]:
            seconds = args.walk if kind == "session" else args.walk / 2
            return lambda: result["walks"].append(walk(
                server, pop["files"][f"{kind}_active"], scratch, seconds, kind))

        for n, workers in enumerate(args.workers):
            config = f"x{workers}"
            bl.log(f"authgate serve --workers {workers}")
            if n == 0:
                # Nothing anywhere but PostgreSQL: every first look-up misses Redis too.
                server = bl.authgate_server(f"cold-{config}", env, scratch, workers=workers)
                with server:
                    time.sleep(0.5 * workers)
                    check_one(server, pop["files"])
                    rows.append(cell(server, "session pg-cold", scripts["session_active"],
                                     args.duration, workers, config))
                    rows += kind_cells(server, scripts, args, workers, config, "bearer",
                                       before_warm=walk_active(server, "bearer"))
                    result["log_errors"][config] = server.log_errors()[:20]
                fill()
            # Redis holds the active sessions (as logins leave them); this process nothing.
            server = bl.authgate_server(f"cold-{config}-redis", env, scratch, workers=workers)
            with server:
                time.sleep(0.5 * workers)
                check_one(server, pop["files"])
                rows += kind_cells(server, scripts, args, workers, config, "session",
                                   cold="redis-cold",
                                   before_warm=walk_active(server) if n == 0 else None)
                if n > 0:
                    rows += kind_cells(server, scripts, args, workers, config, "bearer")
                result["log_errors"][config + " redis"] = server.log_errors()[:20]
        # The setting a user can change today: write last-seen less often (a returning
        # user's first request in a process then costs no PostgreSQL write).
        # Sessions clamp the interval to SESSION_IDLE_TTL / 10 (other workers judge
        # idleness from the stored last-seen): the idle TTL goes up with it (the bench's
        # session rows carry a 12 h idle TTL of their own anyway).
        touch_env = {**env, "AUTHGATE_SESSION_TOUCH_INTERVAL": str(TOUCH_INTERVAL),
                     "AUTHGATE_SESSION_IDLE_TTL": str(TTL)}
        server = bl.authgate_server("cold-touch", touch_env, scratch)
        with server:
            config = f"x1 touch={TOUCH_INTERVAL}"
            bl.log(f"authgate serve, SESSION_TOUCH_INTERVAL={TOUCH_INTERVAL}")
            rows.append(cell(server, "session redis-cold", scripts["session_active"],
                             args.duration, 1, config))
            rows.append(cell(server, "session redis-cold 2", scripts["session_active"],
                             args.duration, 1, config))
            result["log_errors"][config] = server.log_errors()[:20]
        if not args.no_patch:
            bl.log("authgate serve, verified-token cache "
                   f"{BIG_VERIFIED_BYTES >> 20} MB (TOKEN_CACHE_MB)")
            server = patched_server("cold-bigcache", env, scratch)
            with server:
                rows += kind_cells(server, scripts, args, 1, "x1 big", "bearer",
                                   before_warm=walk_active(server, "bearer"))
                result["log_errors"]["x1 big"] = server.log_errors()[:20]
    return result


# -- report -------------------------------------------------------------------------------


def report(result: dict[str, Any], info: dict[str, str], command: str) -> str:
    a = result["args"]
    pop = result["populate"]
    lines = [
        "# A cold working set on PostgreSQL + Redis, over HTTP", "",
        f"`{command}`", "", bl.info_lines(info), "",
        f"**{a['sessions']:,} sessions** and **{a['families']:,} token families** on a fresh "
        f"PostgreSQL database ({pop['db_bytes'] / 1e6:.0f} MB after loading; populated in "
        f"{pop['total_s']:.0f} s: sessions by COPY {pop['timings']['sessions_s']:.0f} s, "
        f"families {pop['timings']['families_s']:.0f} s, {a['families'] + a['control']:,} "
        f"access tokens signed in-process {pop['timings']['tokens_s']:.0f} s, "
        f"{pop['token_bytes']:.0f} bytes each), Redis on 127.0.0.1:6379 with a private "
        f"prefix. Active set: {pop['active']:,} sessions (every 10th) / {a['families']:,} "
        f"tokens, one picked at random per request by a wrk Lua script; control: "
        f"{pop['control']:,} other sessions / tokens. `GET /auth/me`, `wrk -t1 -c32` "
        f"pinned to CPU 1, `authgate serve` to CPU 0, {a['duration']} s per cell.", "",
    ]
    header = ["server", "cell", "req/s", "p50 ms", "p90 ms", "p99 ms", "non-2xx", "errors",
              "cache hit", "worker RSS MB", "load avg"]
    rows = []
    for r in result["rows"]:
        rows.append([r["config"], r["cell"], bl.fmt_int(r["rps"]), bl.fmt_ms(r["p50_ms"]),
                     bl.fmt_ms(r["p90_ms"]), bl.fmt_ms(r["p99_ms"]), str(r["non2xx"]),
                     str(r["errors"]),
                     "—" if r["hit"] != r["hit"] else f"{r['hit']:.0%}",
                     " + ".join(f"{m:.0f}" for m in r["rss_mb"]), r["loadavg"]])
    lines += [bl.md_table(header, rows, "llrrrrrrrrl"), ""]
    ratios = []
    by = {(r["config"], r["cell"]): r for r in result["rows"]}
    for config in sorted({r["config"] for r in result["rows"]}):
        for kind in ("session", "bearer"):
            ctrl = by.get((config, f"{kind} control"))
            for name in (f"{kind} pg-cold", f"{kind} redis-cold", f"{kind} cold",
                         f"{kind} warm {a['rounds']}"):
                row = by.get((config, name))
                if ctrl and row:
                    ratios.append([config, name, f"{row['rps'] / ctrl['rps']:.2f}",
                                   f"{row['p99_ms'] / ctrl['p99_ms']:.2f}"])
    if ratios:
        lines += ["Against the control (same server, the small set):", "",
                  bl.md_table(["server", "cell", "req/s ÷ control", "p99 ÷ control"], ratios),
                  ""]
    for walked in result.get("walks", []):
        lines.append(f"- `{walked.get('server', '?')}`: before the warm "
                     f"{walked.get('kind', '')} rounds a walk asked for "
                     f"{walked['requests']:,} of the "
                     f"{walked['active']:,} active ones in order, in "
                     f"{walked['seconds']:.0f} s, {walked['non2xx']} non-2xx.")
    if "redis_fill_s" in pop:
        lines += ["", f"The {pop['active']:,} active sessions were written to Redis (as a "
                  f"login leaves them) in {pop['redis_fill_s']:.1f} s, after the `pg-cold` "
                  "cell and before the `redis-cold` servers started.", ""]
    bd = result.get("breakdown")
    if bd:
        names = list(bd["pre_ping"])
        ours = "idle_ping" if "idle_ping" in bd else "no_pre_ping"  # (runs before de2d7df)
        lines += ["In-process breakdown of a cold session look-up (one call at a time, "
                  f"{bd['pre_ping'][names[0]]['n']} sessions each, µs p50 / p99): each "
                  "round trip alone, then the whole `session_principal` on sessions no "
                  "cache holds (Redis miss → SELECT → Redis SET → user → UPDATE). "
                  "`pool_pre_ping=True` pings on every checkout (how `store/db.py` "
                  "configured the PostgreSQL pool before de2d7df; bench-only now); "
                  "`ping when idle` is how it does now (a connection idle for over a "
                  "second is pinged first).", "",
                  bl.md_table(["call", "pool_pre_ping=True",
                               "ping when idle" if ours == "idle_ping"
                               else "pool_pre_ping=False"],
                              [[n, f"{bd['pre_ping'][n]['p50']:.0f} / "
                                   f"{bd['pre_ping'][n]['p99']:.0f}",
                                f"{bd[ours][n]['p50']:.0f} / "
                                f"{bd[ours][n]['p99']:.0f}"] for n in names]), ""]
    lines += [
        "How to read it: with 32 connections in a closed loop, latency ≈ 32 ÷ req/s, so p99 "
        "≤ 5 ms needs well over 6,400 req/s with a tight tail: the fully cached rows get "
        "near it or under it (the session control set is not in Redis, only the active one "
        "is: its first requests read PostgreSQL, which its p99 shows). What a cold set adds "
        "per request is the time of a miss, ≈ "
        "1/req/s(cold) − 1/req/s(control): a session miss is a Redis `GET` (on a Redis miss "
        "also the PostgreSQL `SELECT` and a Redis `SET`; the reads of one event-loop turn go "
        "as one `MGET`); last-seen is written behind, once a "
        "second in one batch, so no write happens inside a request (the `touch=3600` server "
        "shows what that batch still costs the process); a token miss is a signature "
        "verification. The session cache holds `CACHE_SIZE` (200,000) entries, so 100,000 "
        "active sessions fit and, once seen, run at the control's speed (`session warm`). "
        "The verified-token cache is capped at `TOKEN_CACHE_MB` = 64 MiB, about 40,000 "
        "tokens of this size, so with 100,000 active tokens at most two in five hit however "
        "long it runs (`bearer warm`); the `x1 big` server (`TOKEN_CACHE_MB=256`) holds them "
        "all. "
        "The tails of the cold rows are also the garbage collector's: while a cache fills, "
        "CPython 3.11 runs a full collection each time the long-lived objects have grown by "
        "a quarter, and with 100,000 cached sessions one walks them all for ~100-250 ms. "
        "The machine is shared: read the load average column, and compare only rows taken "
        "close together.", ""]
    if any("→180*" in r["config"] for r in result["rows"]):
        lines += ["\\* This run set only `SESSION_TOUCH_INTERVAL=3600`; authgate clamps the "
                  "interval to `SESSION_IDLE_TTL` / 10 = 180 s, so these sessions (written "
                  "minutes before) were still touched on their first request: the row is one "
                  "more `redis-cold` server, not a run without the write. The script now "
                  "raises the idle TTL with it; see `coldset-touch.md` for that run.", ""]
    errors = {k: v for k, v in result.get("log_errors", {}).items() if v}
    if errors:
        lines += ["Server log errors:", "", "```", json.dumps(errors, indent=1), "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--families", type=int, default=100_000)
    parser.add_argument("--active", type=int, default=100_000)
    parser.add_argument("--control", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 2])
    parser.add_argument("--walk", type=float, default=120,
                        help="seconds (at most; first --workers value only) for walking every "
                             "active session once before the warm session rounds")
    parser.add_argument("--no-patch", action="store_true",
                        help="skip the bigger-verified-cache server")
    parser.add_argument("--out", type=Path, default=bl.RESULTS / "coldset.md")
    parser.add_argument("--from-json", type=Path,
                        help="only rewrite the report from a raw JSON of an earlier run")
    args = parser.parse_args(argv)
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        args.out.write_text(report(data, data["info"], data["command"]))
        return 0
    if args.duration > 10:
        parser.error("--duration: at most 10 s per cell (shared machine)")
    info = bl.machine_info()
    command = "python bench/coldset.py " + " ".join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="authgate-coldset-") as tmp:
        started = time.monotonic()
        result = run(args, Path(tmp))
        result["elapsed_s"] = time.monotonic() - started
    info["loadavg at the end"] = loadavg()  # (``loadavg``: at the start)
    result["info"], result["command"] = info, command.strip()
    bl.write_json(bl.RESULTS / "raw" / "coldset.json", result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(result, info, command.strip()))
    bl.log(f"wrote {args.out} in {result['elapsed_s']:.0f} s")
    bad = [r for r in result["rows"] if r["non2xx"] or r["errors"]]
    return 1 if bad else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"coldset: {exc}", file=sys.stderr)
        sys.exit(2)
