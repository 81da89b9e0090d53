"""How fast a revocation made on one authgate process is refused by another.

    .venv/bin/python bench/revocation.py [--trials 200] [--duration 10] [--configs ...]

Configurations (``--configs``, comma-separated, default all three):

* ``pg-redis``: two ``authgate serve`` instances (A, B) on one fresh PostgreSQL database
  ``authgate_bench_<random>`` (dropped afterwards) and Redis (``AUTHGATE_REDIS_PREFIX`` =
  a random prefix, its keys deleted afterwards);
* ``pg``: the same two instances without Redis: B learns of revocations by tailing the
  database's revocation log every ``AUTHGATE_REVOCATION_POLL_INTERVAL`` = 0.25 s;
* ``sqlite-workers``: one ``authgate serve --workers 2`` on SQLite. A and B are then two
  keep-alive connections that reach different worker processes (told apart by their
  ``authgate_cached_sessions`` gauge after a login on A; a connection that had to reconnect
  is reported, since it might have changed worker).

Each trial, for a session cookie: log in on A, check ``GET /auth/me`` on B is 200 (B now has
the session cached), ``POST /auth/logout`` on A, then poll ``GET /auth/me`` on B as fast as
one client can (one keep-alive connection, no sleep) until it is 401. For a bearer token:
``POST /auth/token`` on A, ``GET /auth/me`` on B, ``POST /auth/revoke`` on A, poll B. The delay
is from the moment A's answer to the logout/revoke arrived to the moment B's first 401
arrived (so it includes one B round trip, ~0.5 ms); each trial waits a random 0-0.25 s
before revoking, so revocations land at random phases of B's log poll. Then, for
``pg-redis``, throughput of ``GET /auth/me`` on one instance versus two at once (a wrk
each); and, for both PostgreSQL configurations, a burst of first lookups on B of sessions it
has never seen, on 50 and on 300 concurrent connections. Results: bench/results/revocation.md
(+ raw JSON under bench/results/raw/).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import benchlib as bl
from benchlib import BenchError, KeepAlive, Server

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
POLL_LIMIT_S = 5.0
POLL_INTERVAL = 0.25
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class Trials:
    config: str
    kind: str  # "cookie" | "bearer"
    delays_ms: list[float] = field(default_factory=list)
    polls: list[int] = field(default_factory=list)
    revoke_ms: list[float] = field(default_factory=list)
    timeouts: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        d = self.delays_ms
        return {
            "config": self.config, "kind": self.kind, "n": len(d),
            "median_ms": bl.median(d), "p90_ms": bl.percentile(d, 90),
            "p99_ms": bl.percentile(d, 99), "max_ms": max(d) if d else float("nan"),
            "first_poll": sum(1 for p in self.polls if p == 1) / len(self.polls)
            if self.polls else float("nan"),
            "median_polls": bl.median(self.polls),
            "revoke_request_ms": bl.median(self.revoke_ms),
            "timeouts": self.timeouts, "errors": len(self.errors),
        }


# -- services ------------------------------------------------------------------------------


async def _pg(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def pg_database() -> Iterator[str]:
    name = f"authgate_bench_{secrets.token_hex(6)}"
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def redis_prefix() -> Iterator[str]:
    import redis

    prefix = f"authgate-bench-{secrets.token_hex(6)}"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 1000):
            client.unlink(*keys[i:i + 1000])
        client.close()


# -- trials --------------------------------------------------------------------------------


def poll_until_refused(b: KeepAlive, headers: dict[str, str]) -> tuple[float, int] | None:
    """Poll ``GET /auth/me`` on ``b`` until 401: (arrival time, polls), or None on timeout."""
    polls = 0
    deadline = time.perf_counter() + POLL_LIMIT_S
    while time.perf_counter() < deadline:
        status, body = b.request("GET", "/auth/me", headers=headers)
        polls += 1
        if status == 401:
            return time.perf_counter(), polls
        if status != 200:
            raise BenchError(f"B answered {status} while polling: {body[:200]!r}")
    return None


def cookie_trial(a: KeepAlive, b: KeepAlive, out: Trials) -> None:
    status, headers, body = a.exchange("POST", "/auth/login", json.dumps(
        {"username": "alice", "password": bl.PASSWORD}), JSON)
    if status != 200:
        raise BenchError(f"login on A answered {status}: {body[:200]!r}")
    value = bl.set_cookies(headers)["__Host-authgate"]
    csrf = json.loads(body)["csrf_token"]
    cookie = {"Cookie": f"__Host-authgate={value}"}
    status, body = b.request("GET", "/auth/me", headers=cookie)
    if status != 200:
        raise BenchError(f"B refused a fresh session: {status} {body[:200]!r}")
    decorrelate()
    t0 = time.perf_counter()
    status, body = a.request("POST", "/auth/logout", headers={**cookie, "X-CSRF-Token": csrf})
    t1 = time.perf_counter()
    if status != 204:
        raise BenchError(f"logout on A answered {status}: {body[:200]!r}")
    record(out, t0, t1, poll_until_refused(b, cookie))


def bearer_trial(a: KeepAlive, b: KeepAlive, out: Trials) -> None:
    status, body = a.request("POST", "/auth/token", urlencode(
        {"grant_type": "password", "username": "alice", "password": bl.PASSWORD}), FORM)
    if status != 200:
        raise BenchError(f"token on A answered {status}: {body[:200]!r}")
    token = json.loads(body)["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    status, body = b.request("GET", "/auth/me", headers=bearer)
    if status != 200:
        raise BenchError(f"B refused a fresh token: {status} {body[:200]!r}")
    decorrelate()
    t0 = time.perf_counter()
    status, body = a.request("POST", "/auth/revoke", urlencode({"token": token}), FORM)
    t1 = time.perf_counter()
    if status != 200:
        raise BenchError(f"revoke on A answered {status}: {body[:200]!r}")
    record(out, t0, t1, poll_until_refused(b, bearer))


def decorrelate() -> None:
    """Sleep a random part of a poll interval, so the revocation lands at a random phase of
    B's 0.25 s log poll (without it every trial, ending right after a poll and taking about
    as long as the last one, would land at the same phase)."""
    time.sleep(random.uniform(0, POLL_INTERVAL))


def record(out: Trials, t0: float, t1: float, refused: tuple[float, int] | None) -> None:
    out.revoke_ms.append((t1 - t0) * 1000)
    if refused is None:
        out.timeouts += 1
        return
    at, polls = refused
    out.delays_ms.append((at - t1) * 1000)
    out.polls.append(polls)


def run_trials(config: str, a: KeepAlive, b: KeepAlive, trials: int) -> list[Trials]:
    results = []
    for kind, trial in (("cookie", cookie_trial), ("bearer", bearer_trial)):
        out = Trials(config, kind)
        for _ in range(trials):
            try:
                trial(a, b, out)
            except BenchError as exc:
                out.errors.append(str(exc))
                if len(out.errors) > 10:
                    break
        s = out.summary()
        bl.log(f"  {config:15} {kind:6} n={s['n']:4} median {s['median_ms']:7.2f} ms  "
               f"p99 {s['p99_ms']:7.2f} ms  max {s['max_ms']:7.2f} ms  "
               f"first-poll {s['first_poll']:.0%}  timeouts {out.timeouts}  "
               f"errors {len(out.errors)}")
        results.append(out)
    return results


# -- configurations ------------------------------------------------------------------------


def two_instances(work: Path, env: dict[str, str]) -> tuple[Server, Server]:
    bl.create_user(env, cwd=work)
    a = bl.authgate_server("a", env, work, cpu=None)
    b = bl.authgate_server("b", env, work, cpu=None)
    return a, b


def throughput(a: Server, b: Server, duration: int) -> dict[str, Any]:
    """``GET /auth/me`` (cookie, then bearer) on A alone, then on A and B at once."""
    cookie, _ = bl.authgate_login(a.url)
    token = bl.authgate_token(a.url)
    out: dict[str, Any] = {}
    for kind, headers in (("cookie", {"Cookie": f"__Host-authgate={cookie}"}),
                          ("bearer", {"Authorization": f"Bearer {token}"})):
        for srv in (a, b):  # warm both caches
            bl.run_wrk(srv.url + "/auth/me", connections=32, duration=1, headers=headers,
                       cpu=None)
        one = bl.run_wrk(a.url + "/auth/me", connections=32, duration=duration,
                         headers=headers, cpu=None)
        procs = [bl.start_wrk(srv.url + "/auth/me", connections=32, duration=duration,
                              headers=headers, cpu=None) for srv in (a, b)]
        both = [bl.finish_wrk(p) for p in procs]
        out[kind] = {"one": one.as_dict(), "two": [r.as_dict() for r in both],
                     "sum": sum(r.rps for r in both)}
        bl.log(f"  throughput {kind}: one instance {one.rps:,.0f} req/s; two "
               f"{both[0].rps:,.0f} + {both[1].rps:,.0f} = {out[kind]['sum']:,.0f} req/s "
               f"(non-2xx {one.non2xx + sum(r.non2xx for r in both)})")
    return out


def cold_burst(target: Server, env: dict[str, str], work: Path, sessions: int = 3000,
               fans: tuple[int, ...] = (50, 300)) -> dict[str, Any]:
    """First lookups on ``target`` of sessions it has never seen (made through the engine by
    a separate process, as if on another instance), ``sessions / len(fans)`` per burst, on
    each number of concurrent connections in ``fans``: what a restarted or newly added
    instance meets."""
    cookies = work / "burst-cookies.txt"
    made = subprocess.run([str(bl.VENV_PY), str(bl.BENCH / "mksessions.py"),
                           env["AUTHGATE_DATABASE_URL"], str(sessions), str(cookies)],
                          env=env, text=True, capture_output=True, check=False, timeout=600)
    if made.returncode != 0:
        raise BenchError(f"mksessions failed: {made.stderr[-500:]}")
    values = cookies.read_text().split()
    per = len(values) // len(fans)
    before = len(target.log_errors())
    out: dict[str, Any] = {"sessions": len(values), "bursts": []}
    for i, fan in enumerate(fans):
        part = values[i * per:(i + 1) * per]
        statuses, seconds = bl.get_each(target.url, "/auth/me", [
            {"Cookie": f"__Host-authgate={v}"} for v in part], connections=fan)
        out["bursts"].append({"connections": fan, "requests": len(part),
                              "statuses": {str(k): v for k, v in sorted(statuses.items())},
                              "seconds": seconds})
        bl.log(f"  cold burst on B: {len(part)} first lookups on {fan} connections: "
               f"{statuses} in {seconds:.2f} s")
    out["log_errors"] = target.log_errors()[before:]
    return out


def config_pg(trials: int, redis: bool, duration: int, scratch: Path) -> dict[str, Any]:
    name = "pg-redis" if redis else "pg"
    work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=scratch))
    with pg_database() as db_url, redis_prefix() as prefix:
        env = bl.clean_env(AUTHGATE_DATABASE_URL=db_url,
                           AUTHGATE_REVOCATION_POLL_INTERVAL=str(POLL_INTERVAL))
        if redis:
            env.update(AUTHGATE_REDIS_URL=REDIS_URL, AUTHGATE_REDIS_PREFIX=prefix)
        a, b = two_instances(work, env)
        with a, b:
            ka, kb = KeepAlive(a.url), KeepAlive(b.url)
            results = run_trials(name, ka, kb, trials)
            tput = throughput(a, b, duration) if redis and duration else {}
            ka.close()
            kb.close()
            burst = cold_burst(b, env, work)
        errors = a.log_errors() + b.log_errors()
    return {"trials": results, "throughput": tput, "log_errors": errors, "burst": burst,
            "setup": f"two `authgate serve` on PostgreSQL{' + Redis' if redis else ''}, "
                     "unpinned"}


def cached(conn: KeepAlive) -> float:
    status, body = conn.request("GET", "/metrics")
    if status != 200:
        raise BenchError(f"/metrics answered {status}")
    for line in body.decode().splitlines():
        if line.startswith("authgate_cached_sessions "):
            return float(line.split()[1])
    raise BenchError("no authgate_cached_sessions in /metrics")


def config_workers(trials: int, scratch: Path) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="workers-", dir=scratch))
    env = bl.clean_env(AUTHGATE_DATABASE_URL=f"sqlite:///{work}/bench.db",
                       AUTHGATE_REVOCATION_POLL_INTERVAL=str(POLL_INTERVAL))
    bl.create_user(env, cwd=work)
    server = bl.authgate_server("workers", env, work, workers=2, cpu=None)
    with server:
        a = KeepAlive(server.url)
        # Log in through A's own connection: only A's worker caches that session.
        status, _, _ = a.exchange("POST", "/auth/login", json.dumps(
            {"username": "alice", "password": bl.PASSWORD}), JSON)
        if status != 200:
            raise BenchError(f"login answered {status}")
        mine = cached(a)
        b: KeepAlive | None = None
        spare: list[KeepAlive] = []
        for _ in range(32):
            candidate = KeepAlive(server.url)
            if cached(candidate) != mine:
                b = candidate
                break
            spare.append(candidate)
        for conn in spare:
            conn.close()
        if b is None:
            raise BenchError("32 connections all reached the same worker")
        results = run_trials("sqlite-workers", a, b, trials)
        reconnects = a.reconnects + b.reconnects
        a.close()
        b.close()
    return {"trials": results, "throughput": {}, "log_errors": server.log_errors(),
            "setup": "one `authgate serve --workers 2` on SQLite; A and B are connections "
                     "to different workers",
            "reconnects": reconnects}


# -- report --------------------------------------------------------------------------------


def report(configs: dict[str, dict[str, Any]], info: dict[str, str], args: argparse.Namespace,
           command: str) -> str:
    lines = [f"# authgate cross-instance revocation — {info['date']}", "",
             f"Command: `{command}`. {args.trials} trials per credential and configuration. "
             "Delay = from A's answer to the logout (cookie) or `POST /auth/revoke` (bearer) "
             "to B's first 401 on `GET /auth/me`, polled back to back on one keep-alive "
             "connection (resolution: one round trip, ~0.5–1 ms), after a random 0–0.25 s pause so "
             "the revocation lands at a random phase of B's log poll. \"first poll\" = share of "
             "trials where B already refused on the first request after A answered.", "",
             "## Revocation delay", ""]
    rows = []
    for name, data in configs.items():
        for t in data["trials"]:
            s = t.summary()
            rows.append([name, s["kind"], str(s["n"]), bl.fmt_ms(s["median_ms"]),
                         bl.fmt_ms(s["p90_ms"]), bl.fmt_ms(s["p99_ms"]), bl.fmt_ms(s["max_ms"]),
                         f"{s['first_poll']:.0%}", bl.fmt_ms(s["revoke_request_ms"]),
                         str(s["timeouts"]), str(s["errors"])])
    lines.append(bl.md_table(["config", "credential", "n", "median ms", "p90 ms", "p99 ms",
                              "max ms", "first poll", "logout/revoke request ms",
                              f"> {POLL_LIMIT_S:g} s", "errors"], rows, "llrrrrrrrrr"))
    lines += ["", "Set-ups:", ""]
    lines += [f"- `{name}`: {data['setup']}"
              + (f" (connections re-opened: {data['reconnects']})" if "reconnects" in data
                 else "") for name, data in configs.items()]
    lines.append("- `AUTHGATE_REVOCATION_POLL_INTERVAL=0.25` everywhere; Redis on "
                 "127.0.0.1:6379 with a random `AUTHGATE_REDIS_PREFIX`.")
    tput = configs.get("pg-redis", {}).get("throughput")
    if tput:
        lines += ["", "## Two instances versus one (PostgreSQL + Redis)", "",
                  f"`GET /auth/me`, wrk `-t1 -c32 -d{args.duration}s` per instance, nothing "
                  "pinned.", ""]
        rows = []
        for kind, d in tput.items():
            one, two = d["one"], d["two"]
            rows.append([kind, bl.fmt_int(one["rps"]), bl.fmt_ms(one["p99_ms"]),
                         f"{bl.fmt_int(two[0]['rps'])} + {bl.fmt_int(two[1]['rps'])} = "
                         f"**{bl.fmt_int(d['sum'])}**",
                         f"{bl.fmt_ms(two[0]['p99_ms'])} / {bl.fmt_ms(two[1]['p99_ms'])}",
                         f"{d['sum'] / one['rps']:.2f}×"])
        lines.append(bl.md_table(["credential", "one instance req/s", "p99 ms",
                                  "two instances req/s", "p99 ms (A / B)", "two ÷ one"], rows,
                                 "lrrrrr"))
        lines += ["", f"This machine has {info['cores']} cores and nothing is pinned: the two "
                  "servers and the two wrk processes share them, so the two-instance sum is a "
                  "lower bound of what two instances on their own cores give. One instance is "
                  "one Python process (one core at most); its wrk needs a fraction of the "
                  "other core. No instance does a network round trip per request (the "
                  "check is local), so the second instance adds capacity instead of "
                  "contention on PostgreSQL/Redis. On a machine with ≥ 4 cores pin each "
                  "server and its load generator apart for a cleaner figure."]
    bursts = {name: data["burst"] for name, data in configs.items() if data.get("burst")}
    if bursts:
        lines += ["", "## Cold-lookup burst on B", "",
                  "Sessions B has never seen (made through the engine by a separate process, "
                  "as another instance's logins would be), each looked up once on B by an "
                  "asyncio client on N concurrent keep-alive connections — what a restarted "
                  "or newly added instance meets.", ""]
        rows = []
        for name, d in bursts.items():
            for burst in d["bursts"]:
                rows.append([name, str(burst["connections"]), str(burst["requests"]),
                             ", ".join(f"{k}: {v}" for k, v in burst["statuses"].items()),
                             f"{burst['seconds']:.2f}"])
        lines.append(bl.md_table(["config", "connections", "requests", "statuses", "seconds"],
                                 rows, "lrrll"))
        for name, d in bursts.items():
            if d["log_errors"]:
                lines += ["", f"`{name}`: B logged {len(d['log_errors'])} error line(s) "
                          f"during the bursts, first: `{d['log_errors'][0][:200]}`"]
    problems = [(name, t) for name, data in configs.items() for t in data["trials"]
                if t.errors]
    logs = {name: data["log_errors"] for name, data in configs.items() if data["log_errors"]}
    if problems or logs:
        lines += ["", "## Problems seen", ""]
        lines += [f"- {name} {t.kind}: {len(t.errors)} error(s), first: {t.errors[0]}"
                  for name, t in problems]
        lines += [f"- {name} server logs: {len(errs)} error line(s), e.g. `{errs[0][:200]}`"
                  for name, errs in logs.items()]
    lines += ["", "## Machine", "", bl.info_lines(info), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--duration", type=int, default=10,
                        help="seconds of wrk for the throughput comparison (0: skip)")
    parser.add_argument("--configs", default="pg-redis,pg,sqlite-workers")
    parser.add_argument("--out", type=Path, default=bl.RESULTS / "revocation.md")
    args = parser.parse_args(argv)
    info = bl.machine_info()
    scratch = Path(tempfile.mkdtemp(prefix="authgate-revocation-"))
    configs: dict[str, dict[str, Any]] = {}
    failed = False
    for name in args.configs.split(","):
        bl.log(f"{name}:")
        try:
            if name == "pg-redis":
                configs[name] = config_pg(args.trials, True, args.duration, scratch)
            elif name == "pg":
                configs[name] = config_pg(args.trials, False, 0, scratch)
            elif name == "sqlite-workers":
                configs[name] = config_workers(args.trials, scratch)
            else:
                raise BenchError(f"unknown configuration {name!r}")
        except BenchError as exc:
            bl.log(f"FAIL {name}: {exc}")
            failed = True
    info["loadavg (end)"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    command = "python bench/revocation.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    args.out.write_text(report(configs, info, args, command.strip()))
    bl.write_json(bl.RESULTS / "raw" / f"{args.out.stem}.json", {
        name: {**{k: v for k, v in data.items() if k != "trials"},
               "trials": [{**t.summary(), "delays_ms": t.delays_ms, "polls": t.polls,
                           "errors": t.errors} for t in data["trials"]]}
        for name, data in configs.items()})
    failed = failed or any(t.errors or t.timeouts for d in configs.values()
                           for t in d["trials"])
    if failed:
        bl.log(f"server logs kept in {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
