"""``authgate serve --workers N`` against one worker, and the revocation bound with N
workers under load.

    .venv/bin/python bench/workers.py [--workers 2] [--duration 8] [--rounds 3] [--trials 60]
                                     [--backends sqlite,pg-redis]

Throughput: ``authgate serve --workers 1`` and ``--workers N`` on one fresh SQLite database,
``GET /auth/me`` with the session cookie and with an EdDSA bearer token, ``wrk -t1 -c32``;
rounds interleaved (1 then N, then N then 1, ...), medians. Nothing is pinned: on a 2-core
machine wrk shares the cores with the workers, so besides req/s the script reads the CPU
time the server's process group (supervisor + workers, from /proc) and wrk (getrusage of
the child) used during each cell. "server CPU µs / request" says whether a worker gets
slower when there are more of them (contention); "server cores busy" says how much of the
machine the server got, the rest went to wrk and to whatever else ran.

Revocation under load (per backend): one ``authgate serve --workers N`` while a wrk loads
``GET /auth/me`` (another user's session, 32 connections) for the whole measurement;
A and B are keep-alive connections that reach different workers (told apart by the
``authgate_cached_sessions`` gauge, as bench/revocation.py does, whose trials are reused:
log in / get a token through A, see it accepted through B, log out / revoke through A, poll
B back to back until 401). The bound: on SQLite, workers learn of a revocation by polling
the revocation log (``AUTHGATE_REVOCATION_POLL_INTERVAL`` = 0.25 s here), so a refusal is
due within the interval plus one request; with Redis, the fan-out message. The contract's
bound (1 s) is what "held" is checked against. Results:
bench/results/workers.md (+ raw JSON in bench/results/raw/).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import benchlib as bl
import revocation as rv
from benchlib import BenchError, KeepAlive, Server

CLK_TCK = os.sysconf("SC_CLK_TCK")
BOUND_MS = 1000.0  # the contract: a revocation takes effect on every worker within 1 s


def group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds of every live process in process group ``pgid``."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def sqlite_env(work: Path) -> dict[str, str]:
    return bl.clean_env(AUTHGATE_DATABASE_URL=f"sqlite:///{work}/bench.db",
                        AUTHGATE_REVOCATION_POLL_INTERVAL=str(rv.POLL_INTERVAL))


# -- throughput -----------------------------------------------------------------------------


def measure(server: Server, path: str, headers: dict[str, str], duration: int,
            warmup: int) -> dict[str, Any]:
    url = server.url + path
    if warmup:
        bl.run_wrk(url, connections=32, duration=warmup, headers=headers, cpu=None)
    s0, w0, t0 = group_cpu_s(server.pid), children_cpu_s(), time.monotonic()
    res = bl.run_wrk(url, connections=32, duration=duration, headers=headers, cpu=None)
    s1, w1, t1 = group_cpu_s(server.pid), children_cpu_s(), time.monotonic()
    wall = t1 - t0
    return {**res.as_dict(), "server_cpu_s": s1 - s0, "wrk_cpu_s": w1 - w0, "wall_s": wall,
            "server_cores": (s1 - s0) / wall, "wrk_cores": (w1 - w0) / wall,
            "server_us_per_req": (s1 - s0) / res.requests * 1e6 if res.requests else 0.0}


def throughput(workers: int, rounds: int, duration: int, scratch: Path) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="tput-", dir=scratch))
    env = sqlite_env(work)
    bl.create_user(env, cwd=work)
    cells: dict[int, dict[str, list[dict[str, Any]]]] = {1: {}, workers: {}}
    errors: list[str] = []
    for round_no in range(rounds):
        order = [1, workers] if round_no % 2 == 0 else [workers, 1]
        bl.log(f"throughput round {round_no + 1}/{rounds}")
        for n in order:
            server = bl.authgate_server(f"w{n}", env, work, workers=n, cpu=None)
            with server:
                time.sleep(0.5 * n)  # every worker up (the first answers /healthz first)
                cookie, _ = bl.authgate_login(server.url)
                token = bl.authgate_token(server.url)
                for kind, headers in (("session", {"Cookie": f"__Host-authgate={cookie}"}),
                                      ("bearer", {"Authorization": f"Bearer {token}"})):
                    m = measure(server, "/auth/me", headers, duration, warmup=1)
                    cells[n].setdefault(kind, []).append(m)
                    bl.log(f"  workers={n} {kind:7} {m['rps']:8,.0f} req/s  p99 "
                           f"{m['p99_ms']:6.2f} ms  server {m['server_cores']:.2f} cores "
                           f"{m['server_us_per_req']:5.0f} µs/req  wrk {m['wrk_cores']:.2f} "
                           f"cores" + (f"  non-2xx {m['non2xx']}" if m["non2xx"] else ""))
                    if m["non2xx"]:
                        errors.append(f"workers={n} {kind}: {m['non2xx']} non-2xx")
            errors += server.log_errors()
    return {"cells": cells, "errors": errors}


# -- revocation under load ------------------------------------------------------------------


def different_workers(url: str) -> tuple[KeepAlive, KeepAlive]:
    """A (signed in through it: only its worker caches that session) and B, a connection
    that reached another worker."""
    a = KeepAlive(url)
    status, _, _ = a.exchange("POST", "/auth/login", json.dumps(
        {"username": "alice", "password": bl.PASSWORD}), rv.JSON)
    if status != 200:
        raise BenchError(f"login answered {status}")
    mine = rv.cached(a)
    spare: list[KeepAlive] = []
    try:
        for _ in range(64):
            candidate = KeepAlive(url)
            if rv.cached(candidate) != mine:
                return a, candidate
            spare.append(candidate)
    finally:
        for conn in spare:
            conn.close()
    raise BenchError("64 connections all reached the same worker")


def revocation_under_load(backend: str, workers: int, trials: int,
                          scratch: Path) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"revoke-{backend}-", dir=scratch))
    with ExitStack() as stack:
        if backend == "sqlite":
            env = sqlite_env(work)
        elif backend == "pg-redis":
            db_url = stack.enter_context(rv.pg_database())
            prefix = stack.enter_context(rv.redis_prefix())
            env = bl.clean_env(AUTHGATE_DATABASE_URL=db_url, AUTHGATE_REDIS_URL=rv.REDIS_URL,
                               AUTHGATE_REDIS_PREFIX=prefix,
                               AUTHGATE_REVOCATION_POLL_INTERVAL=str(rv.POLL_INTERVAL))
        else:
            raise BenchError(f"unknown backend {backend!r}")
        bl.create_user(env, cwd=work)
        bl.create_user(env, "loader", cwd=work)
        server = bl.authgate_server(f"revoke-{backend}", env, work, workers=workers, cpu=None)
        with server:
            time.sleep(0.5 * workers)
            a, b = different_workers(server.url)
            loader, _ = bl.authgate_login(server.url, "loader")
            load = bl.start_wrk(server.url + "/auth/me", connections=32, duration=900,
                                headers={"Cookie": f"__Host-authgate={loader}"}, cpu=None)
            try:
                time.sleep(1)
                results = rv.run_trials(f"{backend} x{workers}", a, b, trials)
            finally:
                load.send_signal(signal.SIGINT)  # wrk stops and prints its summary
                try:
                    out, _ = load.communicate(timeout=30)
                    load_res: dict[str, Any] | None = bl.parse_wrk(out).as_dict()
                except (subprocess.TimeoutExpired, BenchError):
                    load.kill()
                    load.communicate()
                    load_res = None
            reconnects = a.reconnects + b.reconnects
            a.close()
            b.close()
        return {"trials": [{**t.summary(), "delays_ms": t.delays_ms, "error_messages": t.errors}
                           for t in results],
                "load": load_res, "reconnects": reconnects, "log_errors": server.log_errors()}


# -- report ---------------------------------------------------------------------------------


def report(tput: dict[str, Any] | None, revoke: dict[str, dict[str, Any]], workers: int,
           info: dict[str, str], args: argparse.Namespace, command: str) -> str:
    lines = [f"# authgate serve --workers — {info['date']}", "", f"Command: `{command}`.", ""]
    if tput:
        lines += ["## Throughput: --workers 1 vs --workers " + str(workers), "",
                  f"`GET /auth/me` on SQLite, `wrk -t1 -c32 -d{args.duration}s`, nothing "
                  f"pinned, {args.rounds} interleaved round(s), medians. On this "
                  f"{os.cpu_count()}-core machine wrk runs on the same cores as the workers "
                  "(and so does anything else running): read *server cores busy* for how much "
                  "CPU the server got, and *server CPU µs / request* for whether a worker got "
                  "slower with company (workers share nothing per request, but two vCPUs may "
                  "be the two hyperthreads of one core, and they share its caches).", ""]
        rows = []
        for kind in ("session", "bearer"):
            one = tput["cells"][1].get(kind, [])
            many = tput["cells"][workers].get(kind, [])
            for n, cells in ((1, one), (workers, many)):
                def m(key: str, cells: list[dict[str, Any]] = cells) -> float:
                    return bl.median(c[key] for c in cells)
                per_round = ", ".join(f"{c['rps'] / o['rps']:.2f}×"
                                      for c, o in zip(cells, one, strict=False))
                rows.append([kind, str(n), bl.fmt_int(m("rps")),
                             (f"{m('rps') / bl.median(c['rps'] for c in one):.2f}× "
                              f"({per_round})" if n != 1 and one else "1.00×"),
                             bl.fmt_ms(m("p99_ms")), f"{m('server_cores'):.2f}",
                             f"{m('server_us_per_req'):.0f}", f"{m('wrk_cores'):.2f}"])
        lines += [bl.md_table(["credential", "workers", "req/s", "÷ 1 worker (per round)",
                               "p99 ms",
                               "server cores busy", "server CPU µs / request",
                               "wrk cores busy"], rows, "lrrrrrrr"), ""]
        if tput["errors"]:
            lines += ["Problems: " + "; ".join(tput["errors"][:5]), ""]
    if revoke:
        lines += [f"## Revocation with --workers {workers} under load", "",
                  "Each row: trials from bench/revocation.py (A and B on different workers) "
                  "while a wrk loads `GET /auth/me` with another user's session on 32 "
                  "connections. Delay = A's answer to the logout / revoke → B's first 401. "
                  "The contract's bound is 1 s on every instance and worker. What sets the "
                  "delay: the message to the other worker (SQLite: a datagram on the local "
                  "socket bus; PostgreSQL + Redis: `pg_notify` and pub/sub) plus B's own "
                  "request under load; a lost message costs at most the revocation-log poll "
                  f"({rv.POLL_INTERVAL} s).", ""]
        rows = []
        for backend, data in revoke.items():
            load = data["load"] or {}
            for t in data["trials"]:
                bound = BOUND_MS
                held = "yes" if t["n"] and t["max_ms"] <= bound and not t["timeouts"] else "NO"
                rows.append([backend, t["kind"], str(t["n"]), f"{t['median_ms']:.1f}",
                             f"{t['p99_ms']:.1f}", f"{t['max_ms']:.1f}",
                             f"{t['first_poll']:.0%}", f"{load.get('rps', float('nan')):,.0f}",
                             bl.fmt_ms(load.get("p99_ms", float("nan"))),
                             str(t["timeouts"]), str(t["errors"]),
                             f"{held} (≤ {bound:.0f} ms)"])
        lines += [bl.md_table(["backend", "credential", "n", "median ms", "p99 ms", "max ms",
                               "first poll", "load req/s", "load p99 ms", "> 5 s", "errors",
                               "bound held"], rows, "llrrrrrrrrrl"), ""]
        for backend, data in revoke.items():
            if data["reconnects"] or data["log_errors"]:
                lines.append(f"- {backend}: connections re-opened {data['reconnects']}, "
                             f"server log error lines {len(data['log_errors'])}")
        lines.append("")
    lines += ["## Machine", "", bl.info_lines(info), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk cell")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=60,
                        help="revocation trials per credential and backend (0: skip)")
    parser.add_argument("--backends", default="sqlite,pg-redis")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--out", type=Path, default=bl.RESULTS / "workers.md")
    parser.add_argument("--report-only", action="store_true",
                        help="re-render the .md from the last run's raw JSON")
    args = parser.parse_args(argv)
    if args.report_only:
        raw = json.loads((bl.RESULTS / "raw" / f"{args.out.stem}.json").read_text())
        tput = raw["throughput"]
        if tput:
            tput["cells"] = {int(k): v for k, v in tput["cells"].items()}
            args.workers = max(tput["cells"])
        args.out.write_text(report(tput, raw["revocation"], args.workers, raw["info"], args,
                                   raw.get("command", "python bench/workers.py")))
        print(f"wrote {args.out}")
        return 0
    info = bl.machine_info()
    scratch = Path(tempfile.mkdtemp(prefix="authgate-workers-"))
    failed = False
    tput = None
    revoke: dict[str, dict[str, Any]] = {}
    try:
        if not args.skip_throughput:
            tput = throughput(args.workers, args.rounds, args.duration, scratch)
            failed = failed or bool(tput["errors"])
        for backend in [b for b in args.backends.split(",") if b] if args.trials else []:
            bl.log(f"revocation under load: {backend}, --workers {args.workers}")
            try:
                revoke[backend] = revocation_under_load(backend, args.workers, args.trials,
                                                        scratch)
            except BenchError as exc:
                bl.log(f"FAIL {backend}: {exc}")
                failed = True
    finally:
        info["loadavg (end)"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    failed = failed or any(t["errors"] or t["timeouts"] for d in revoke.values()
                           for t in d["trials"])
    command = "python bench/workers.py " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report(tput, revoke, args.workers, info, args, command.strip()))
    bl.write_json(bl.RESULTS / "raw" / f"{args.out.stem}.json",
                  {"info": info, "throughput": tput, "revocation": revoke,
                   "command": command.strip()})
    if failed:
        bl.log(f"server logs kept in {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
