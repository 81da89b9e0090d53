"""Session lookup and token check cost as live sessions and revoked ``jti`` grow.

    .venv/bin/python bench/scaling.py [--max-sessions 1000000] [--budget 300] [--sample 1000]

In process, through the services (``gate.sessions.session_principal``,
``gate.grants.token_principal``; the hot-state rows read the engine's internals on purpose),
on SQLite alone and on Redis (+ the same SQLite file behind it). Session rows are inserted
directly with SQLAlchemy into the ``sessions`` table (``token_hash`` = SHA-256 hex of a random
43-character value kept for the lookups) -- ``Engine.login`` would spend 30 ms of Argon2id
on each -- and, for Redis, written as authgate writes them (``<prefix>:sess:<hash>`` = the
record as JSON, with a TTL). Denied ``jti`` go into ``denied_jtis`` plus one ``revocations``
log row each, as ``POST /auth/revoke`` writes them.

For each level (1k, 10k, 100k, 300k, 1M live sessions, as far as ``--budget`` seconds of
inserting allow) a fresh engine is started and a random sample of sessions is looked up
twice: ``cold`` = the first lookup in this process (Redis ``GET`` or SQLite ``SELECT``),
``warm`` = the same value again (in-process cache). Session touches are turned off
(``session_touch_interval`` = 10^9) so a lookup is a lookup, not a periodic write. Then, with
0 .. 100k denied ``jti``: engine start-up time, ``token_principal`` for fresh tokens (cold:
Ed25519 + claim checks) and again (warm: verified-token cache), and the cost of the
revocation watcher's housekeeping (``HotState._housekeep``, which runs after every poll).
Finally, with more live sessions than the cache holds (200k), whether a session looked up at
the start is still cached after 200k others. Writes bench/results/scaling.md and
scaling.png (raw numbers under bench/results/raw/).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchlib as bl
import orjson
import sqlalchemy as sa

from authgate import AuthGate
from authgate.engine import Engine
from authgate.models import SessionRecord
from authgate.settings import Settings
from authgate.store import schema as t

REDIS_URL = "redis://127.0.0.1:6379/0"
LEVELS = [1_000, 10_000, 100_000, 300_000, 1_000_000]
JTI_LEVELS = [0, 1_000, 10_000, 100_000]
TTL = 12 * 3600


@dataclass
class Timing:
    median_us: float
    p99_us: float

    @classmethod
    def of(cls, ns: list[int]) -> Timing:
        us = [n / 1000 for n in ns]
        return cls(bl.median(us), bl.percentile(us, 99))


@dataclass
class Store:
    """The SQLite file (and Redis keys) the measurements read."""

    db_path: Path
    prefix: str
    redis: bool
    user_id: str = ""
    values: list[str] = field(default_factory=list)
    jtis: int = 0
    insert_s: float = 0.0

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db_path}"

    def settings(self, redis: bool) -> Settings:
        extra: dict[str, Any] = {"redis_url": REDIS_URL, "redis_prefix": self.prefix} \
            if redis else {}
        return Settings(database_url=self.url, session_touch_interval=10**9, **extra)

    def add_sessions(self, upto: int) -> None:
        """Insert sessions until there are ``upto`` (SQLite, and Redis when enabled)."""
        import redis

        start = time.perf_counter()
        now = time.time()
        engine = sa.create_engine(self.url)
        client = redis.Redis.from_url(REDIS_URL) if self.redis else None
        batch = 20_000
        try:
            while len(self.values) < upto:
                n = min(batch, upto - len(self.values))
                records = []
                for _ in range(n):
                    value = secrets.token_urlsafe(32)
                    self.values.append(value)
                    records.append(SessionRecord(
                        id=uuid.uuid4().hex,
                        token_hash=hashlib.sha256(value.encode()).hexdigest(),
                        user_id=self.user_id, csrf_token=secrets.token_urlsafe(32),
                        created_at=now, last_seen_at=now, expires_at=now + TTL, idle_ttl=TTL,
                        remember=False, ip="127.0.0.1", user_agent="authgate-bench"))
                rows = [{f: getattr(rec, f) for f in SessionRecord.__slots__} for rec in records]
                with engine.begin() as conn:
                    conn.execute(t.sessions.insert(), rows)
                if client is not None:  # as RedisBackend.put_session writes it
                    pipe = client.pipeline(transaction=False)
                    for row in rows:
                        pipe.set(f"{self.prefix}:sess:{row['token_hash']}", orjson.dumps(row),
                                 ex=TTL)
                    pipe.execute()
        finally:
            engine.dispose()
            if client is not None:
                client.close()
        self.insert_s += time.perf_counter() - start

    def add_jtis(self, upto: int) -> None:
        now = time.time()
        engine = sa.create_engine(self.url)
        try:
            while self.jtis < upto:
                n = min(20_000, upto - self.jtis)
                jtis = [secrets.token_urlsafe(16) for _ in range(n)]
                with engine.begin() as conn:
                    conn.execute(t.denied_jtis.insert(),
                                 [{"jti": j, "expires_at": now + 3600} for j in jtis])
                    conn.execute(t.revocations.insert(),
                                 [{"kind": "jti", "key": j, "at": now} for j in jtis])
                self.jtis += n
        finally:
            engine.dispose()

    def drop_redis(self) -> None:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys: list[bytes] = []
        for key in client.scan_iter(match=f"{self.prefix}:*", count=10_000):
            keys.append(key)
            if len(keys) >= 10_000:
                client.unlink(*keys)
                keys = []
        if keys:
            client.unlink(*keys)
        client.close()


async def timed(call: Callable[[str], Awaitable[object]], args: list[str]) -> list[int]:
    """Nanoseconds of ``await call(arg)`` for each arg, one at a time."""
    out = []
    for arg in args:
        start = time.perf_counter_ns()
        result = await call(arg)
        out.append(time.perf_counter_ns() - start)
        if result is None:
            raise bl.BenchError("a live session was not found")
    return out


async def measure_sessions(store: Store, redis: bool, sample: int) -> dict[str, Any]:
    async with AuthGate(store.settings(redis)) as gate:
        values = random.sample(store.values, min(sample, len(store.values)))
        cold = await timed(gate.sessions.session_principal, values)
        warm: list[int] = []
        for _ in range(3):
            warm += await timed(gate.sessions.session_principal, values)
        return {"cold": Timing.of(cold).__dict__, "warm": Timing.of(warm).__dict__}


async def measure_tokens(store: Store, redis: bool, sample: int) -> dict[str, Any]:
    started = time.perf_counter()
    engine = Engine(store.settings(redis))
    await engine.start(migrate=False)
    start_s = time.perf_counter() - started
    try:
        now = time.time()
        tokens = [engine.tokens.issue(sub=store.user_id, scope="", roles=[],
                                      family_id=uuid.uuid4().hex, now=now)[0]
                  for _ in range(sample)]
        cold = await timed(engine.grants.token_principal, tokens)
        warm: list[int] = []
        for _ in range(3):
            warm += await timed(engine.grants.token_principal, tokens)
        housekeep = []
        for _ in range(20):
            begin = time.perf_counter_ns()
            engine.hot._housekeep()
            housekeep.append(time.perf_counter_ns() - begin)
        return {"denied_in_memory": len(engine.hot.denied_jtis), "start_s": start_s,
                "cold": Timing.of(cold).__dict__, "warm": Timing.of(warm).__dict__,
                "housekeep": Timing.of(housekeep).__dict__}
    finally:
        await engine.stop()


async def cache_churn(store: Store, probe: int = 500, every: int = 1000) -> dict[str, Any]:
    """Keep ``probe`` sessions in use (all looked up again after every ``every`` others)
    while ``capacity`` + 10k other sessions are looked up once each; count how often a
    session in use was no longer cached (an LRU cache would never drop them)."""
    from authgate.core.credentials import digest

    engine = Engine(store.settings(store.redis))  # Redis: the same cache, faster misses
    await engine.start(migrate=False)
    try:
        capacity = engine.hot.sessions.capacity
        in_use = store.values[:probe]
        others = store.values[probe:probe + capacity + 10_000]
        if len(others) < capacity:
            return {}
        keys = [digest(v) for v in in_use]
        for v in in_use:
            await engine.sessions.session_principal(v)
        lookups = misses = 0
        miss_ns: list[int] = []
        hit_ns: list[int] = []
        for start in range(0, len(others), every):
            batch = others[start:start + every]
            for i in range(0, len(batch), 50):  # < redis-py's 100-connection pool
                await asyncio.gather(*(engine.sessions.session_principal(v)
                                       for v in batch[i:i + 50]))
            for v, key in zip(in_use, keys, strict=True):
                cached = key in engine.hot.sessions
                begin = time.perf_counter_ns()
                await engine.sessions.session_principal(v)
                (hit_ns if cached else miss_ns).append(time.perf_counter_ns() - begin)
                lookups += 1
                misses += not cached
        return {"capacity": capacity, "others": len(others), "probe": probe, "every": every,
                "store": "Redis" if store.redis else "SQLite",
                "lookups": lookups, "misses": misses, "hit": Timing.of(hit_ns).__dict__,
                "miss": Timing.of(miss_ns).__dict__ if miss_ns else None}
    finally:
        await engine.stop()


async def setup(store: Store) -> None:
    engine = Engine(Settings(database_url=store.url))
    await engine.start()
    try:
        user = await engine.users.create_user("alice", bl.PASSWORD)
        store.user_id = user.id
    finally:
        await engine.stop()


def chart(result: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    colors = {("sqlite", "cold"): "C0", ("sqlite", "warm"): "C1", ("redis", "cold"): "C2",
              ("redis", "warm"): "C3", ("sqlite", "housekeep"): "C4",
              ("redis", "housekeep"): "C5"}
    for backend, style in (("sqlite", "-"), ("redis", "--")):
        levels = [row for row in result["sessions"] if backend in row]
        xs = [row["sessions"] for row in levels]
        for kind, marker in (("cold", "o"), ("warm", "s")):
            color = colors[backend, kind]
            left.plot(xs, [row[backend][kind]["median_us"] for row in levels], style,
                      marker=marker, color=color, label=f"{backend} {kind} (median)")
            left.plot(xs, [row[backend][kind]["p99_us"] for row in levels], style,
                      marker=marker, color=color, alpha=0.35, label=f"{backend} {kind} (p99)")
        jl = [row for row in result["tokens"] if backend in row]
        jx = [max(row["jtis"], 100) for row in jl]
        for kind, marker in (("cold", "o"), ("warm", "s")):
            right.plot(jx, [row[backend][kind]["median_us"] for row in jl], style,
                       marker=marker, color=colors[backend, kind],
                       label=f"{backend} token {kind} (median)")
        right.plot(jx, [row[backend]["housekeep"]["median_us"] for row in jl], style,
                   marker="^", color=colors[backend, "housekeep"],
                   label=f"{backend} housekeeping per poll (blocks the loop)")
    left.set(xscale="log", yscale="log", xlabel="live sessions (rows)",
             ylabel="µs per engine.sessions.session_principal",
             title="session lookup vs live sessions")
    right.set(xscale="log", yscale="log", xlabel="denied jti (0 drawn at 100)",
              ylabel="µs", title="token check and housekeeping vs denied jti")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def report(result: dict[str, Any], info: dict[str, str], command: str) -> str:
    lines = [f"# authgate scaling — {info['date']}", "",
             f"Command: `{command}`. In process, one coroutine at a time, timings per call "
             f"with `perf_counter_ns` (µs). Sample: {result['sample']} random sessions/tokens "
             "per level; warm = 3 more passes over the same sample. Largest level reached: "
             f"**{result['max_sessions']:,} live sessions** (inserting took "
             f"{result['insert_s']:.0f} s of the {result['budget']} s budget"
             + (", stopped by the budget" if result["stopped_by_budget"] else "") + ").", "",
             "## Session lookup (`engine.sessions.session_principal`)", ""]
    rows = []
    for row in result["sessions"]:
        for backend in ("sqlite", "redis"):
            if backend not in row:
                continue
            d = row[backend]
            rows.append([f"{row['sessions']:,}", backend,
                         f"{d['cold']['median_us']:.0f}", f"{d['cold']['p99_us']:.0f}",
                         f"{d['warm']['median_us']:.1f}", f"{d['warm']['p99_us']:.1f}"])
    lines.append(bl.md_table(["live sessions", "store", "cold median µs", "cold p99 µs",
                              "warm median µs", "warm p99 µs"], rows))
    lines += ["", "cold = first lookup in this process: SQLite `SELECT` by `token_hash` through "
              "aiosqlite's thread, or Redis `GET` (+ JSON decode); warm = in-process cache "
              "(SHA-256 of the cookie + dict look-ups + building the principal).", "",
              "## Token check (`engine.grants.token_principal`) vs denied `jti`", ""]
    rows = []
    for row in result["tokens"]:
        for backend in ("sqlite", "redis"):
            if backend not in row:
                continue
            d = row[backend]
            rows.append([f"{row['jtis']:,}", backend, f"{d['start_s'] * 1000:.0f}",
                         f"{d['cold']['median_us']:.0f}", f"{d['cold']['p99_us']:.0f}",
                         f"{d['warm']['median_us']:.1f}", f"{d['warm']['p99_us']:.1f}",
                         f"{d['housekeep']['median_us'] / 1000:.2f}"])
    lines.append(bl.md_table(["denied jti", "store", "engine start ms", "cold median µs",
                              "cold p99 µs", "warm median µs", "warm p99 µs",
                              "housekeeping per poll ms"], rows))
    lines += ["", "cold = a token never seen by this process (header/claims parsing, "
              "Ed25519 signature, claim checks); warm = the verified-token cache plus the "
              "revocation checks (`jti` and family in dicts, the user's cutoff). Housekeeping "
              "= `HotState._housekeep()`, which the revocation watcher runs on the event loop "
              "after every poll (every 0.25 s): its time is a stall of every request in "
              "flight, four times a second.", ""]
    churn = result.get("churn")
    if churn:
        miss = churn["miss"]
        lines += ["## Session cache capacity", "",
                  f"The in-process session cache holds {churn['capacity']:,} entries. "
                  f"{churn['probe']} sessions were kept in use (each looked up again after "
                  f"every {churn['every']:,} other lookups) while {churn['others']:,} other "
                  f"sessions were looked up once each ({churn['store']} behind the cache): "
                  f"**{churn['misses']:,} of {churn['lookups']:,}** lookups of the sessions in "
                  "use found them evicted"
                  + (f" and went back to {churn['store']} ({miss['median_us']:.0f} µs median "
                     f"instead of {churn['hit']['median_us']:.1f} µs): the cache evicted "
                     "entries in use, i.e. it is not LRU" if churn["misses"] else
                     " (the cache keeps what is in use: LRU)")
                  + f". Either way, with more than {churn['capacity']:,} sessions active per "
                  "process every lookup is a store read (the capacity is fixed in "
                  "`HotState`).", ""]
    lines += ["## Machine", "", bl.info_lines(info), ""]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="authgate-scaling-"))
    store = Store(scratch / "scaling.db", f"authgate-bench-{secrets.token_hex(6)}",
                  redis=not args.no_redis)
    backends = ["sqlite"] + ([] if args.no_redis else ["redis"])
    result: dict[str, Any] = {"sample": args.sample, "budget": args.budget, "sessions": [],
                              "tokens": [], "stopped_by_budget": False}
    try:
        await setup(store)
        for level in [lv for lv in LEVELS if lv <= args.max_sessions]:
            if store.values:
                rate = len(store.values) / store.insert_s
                if store.insert_s + (level - len(store.values)) / rate > args.budget:
                    bl.log(f"stopping before {level:,}: would exceed the {args.budget} s budget")
                    result["stopped_by_budget"] = True
                    break
            store.add_sessions(level)
            row: dict[str, Any] = {"sessions": level}
            for backend in backends:
                row[backend] = await measure_sessions(store, backend == "redis", args.sample)
                d = row[backend]
                bl.log(f"{level:>9,} sessions {backend:6} cold {d['cold']['median_us']:7.0f} µs "
                       f"(p99 {d['cold']['p99_us']:6.0f})  warm {d['warm']['median_us']:6.1f} µs "
                       f"(p99 {d['warm']['p99_us']:6.1f})  [inserted in {store.insert_s:.0f} s]")
            result["sessions"].append(row)
        result["max_sessions"] = len(store.values)
        result["insert_s"] = store.insert_s
        for jtis in JTI_LEVELS:
            store.add_jtis(jtis)
            row = {"jtis": jtis}
            for backend in backends:
                row[backend] = await measure_tokens(store, backend == "redis", args.sample)
                d = row[backend]
                bl.log(f"{jtis:>9,} denied jti {backend:6} start {d['start_s'] * 1000:6.0f} ms  "
                       f"cold {d['cold']['median_us']:6.0f} µs  warm "
                       f"{d['warm']['median_us']:5.1f} µs  housekeeping "
                       f"{d['housekeep']['median_us'] / 1000:6.2f} ms")
            result["tokens"].append(row)
        if not args.no_churn and len(store.values) > 210_500:
            result["churn"] = await cache_churn(store)
            c = result["churn"]
            if c:
                bl.log(f"cache churn: {c['misses']:,} of {c['lookups']:,} lookups of sessions "
                       f"in use missed the cache")
    finally:
        if store.redis:
            store.drop_redis()
        remove_db(scratch)
    return result


def remove_db(scratch: Path) -> None:
    for path in scratch.iterdir():
        path.unlink()
    scratch.rmdir()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-sessions", type=int, default=1_000_000)
    parser.add_argument("--budget", type=int, default=300,
                        help="seconds of inserting sessions before stopping the growth")
    parser.add_argument("--sample", type=int, default=1000)
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--no-churn", action="store_true")
    parser.add_argument("--out", type=Path, default=bl.RESULTS / "scaling.md")
    args = parser.parse_args(argv)
    info = bl.machine_info()
    result = asyncio.run(run(args))
    info["loadavg (end)"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    command = "python bench/scaling.py " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.write_text(report(result, info, command.strip()))
    bl.write_json(bl.RESULTS / "raw" / f"{args.out.stem}.json", result)
    png = chart(result, args.out.with_suffix(".png"))
    print(f"wrote {args.out}" + (f" and {args.out.with_suffix('.png')}" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
