"""Server CPU per request across commits: did a change make the per-request path slower?

    .venv/bin/python bench/commits.py REV [REV ...] [--rounds 2] [--duration 4]

For each git revision: a detached worktree of it (under a temporary directory), served by
*this* venv's Python with that worktree's ``src`` first on ``sys.path`` (so every revision
runs on the same libraries), ``authgate serve`` pinned to CPU 0 on a fresh SQLite database,
``wrk -t1 -c32`` pinned to CPU 1 against ``GET /healthz`` and ``GET /auth/me`` with a
session cookie, ``--rounds`` interleaved rounds. What is reported is the server process's
own CPU time (utime + stime from /proc) divided by the requests wrk completed: unlike req/s
it does not move when something else takes the other core, and unlike callgrind's
instruction counts (bench/instructions.py) it includes what the CPU's caches make of the
code (a path can run the same instructions more slowly in a bigger process).
``AUTHGATE_ACCESS_LOG=false`` is set for revisions where the access log was on by default.

Prints a markdown table (median of the rounds; ``me - healthz`` is what authentication and
the answer add to the cheapest computed route; ``/auth/me`` also as user + system time: a
slower server leaves wrk idle more often and pays kernel time to wake it for each answer,
so system time per request grows with user time).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import benchlib as bl
from benchlib import BenchError, Server

ROOT = Path(__file__).resolve().parent.parent
RUNNER = "import sys; sys.path.insert(0, sys.argv.pop(1)); from authgate.cli import main; main()"


def cpu_us_per_request(server: Server, path: str, headers: dict[str, str],
                       duration: float) -> tuple[float, float]:
    """(user, system) µs of server CPU per request."""
    per = os.sysconf("SC_CLK_TCK") / 1e6
    user, system = bl.cpu_times(server.pid)
    res = bl.run_wrk(server.url + path, connections=32, duration=duration, headers=headers)
    user_after, system_after = bl.cpu_times(server.pid)
    if res.non2xx or not res.requests:
        raise BenchError(f"{server.name} {path}: {res.non2xx} non-2xx of {res.requests}")
    return ((user_after - user) / per / res.requests,
            (system_after - system) / per / res.requests)


def measure(rev: str, scratch: Path, rounds: int,
            duration: float) -> dict[str, list[tuple[float, float]]]:
    tree = Path(tempfile.mkdtemp(prefix=f"tree-{rev}-", dir=scratch)) / "src-tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev],
                   check=True, capture_output=True)
    try:
        work = Path(tempfile.mkdtemp(prefix=f"work-{rev}-", dir=scratch))
        env = bl.clean_env(AUTHGATE_DATABASE_URL=f"sqlite:///{work}/bench.db",
                           AUTHGATE_ACCESS_LOG="false")
        cli = [str(bl.VENV_PY), "-c", RUNNER, str(tree / "src")]
        proc = subprocess.run([*cli, "users", "create", "alice", "--password-stdin"],
                              input=bl.PASSWORD, text=True, capture_output=True, env=env,
                              cwd=work, check=False, timeout=120)
        if proc.returncode != 0:
            raise BenchError(f"{rev}: users create failed: {proc.stderr.strip()[-300:]}")
        port = bl.free_port()
        server = Server(f"authgate-{rev}", [*cli, "serve", "--port", str(port)], port, env,
                        work, work / "server.log", ready_path="/healthz").start()
        try:
            cookie, _ = bl.authgate_login(server.url)
            name = "__Host-authgate"
            out: dict[str, list[tuple[float, float]]] = {"healthz": [], "me": []}
            for _ in range(rounds):
                out["healthz"].append(cpu_us_per_request(server, "/healthz", {}, duration))
                out["me"].append(cpu_us_per_request(
                    server, "/auth/me", {"Cookie": f"{name}={cookie}"}, duration))
            return out
        finally:
            server.stop()
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                       check=False, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revs", nargs="+")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=4)
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="authgate-commits-"))
    rows = []
    try:
        for rev in args.revs:
            short = subprocess.run(["git", "-C", str(ROOT), "log", "-1",
                                    "--format=%h %ad %s", "--date=format:%Y-%m-%d %H:%M", rev],
                                   check=True, capture_output=True, text=True).stdout.strip()
            got = measure(rev, scratch, args.rounds, args.duration)
            h = bl.median(u + s for u, s in got["healthz"])
            m = bl.median(u + s for u, s in got["me"])
            m_user = bl.median(u for u, _ in got["me"])
            m_sys = bl.median(s for _, s in got["me"])
            sha, day, clock, subject = [*short.split(" ", 3), ""][:4]
            rows.append([f"`{sha}`", f"{day} {clock}", subject[:60], f"{h:.1f}", f"{m:.1f}",
                         f"{m - h:+.1f}", f"{m_user:.1f} + {m_sys:.1f}"])
            bl.log(f"{sha}: healthz {h:.1f} µs, /auth/me {m:.1f} µs")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(bl.md_table(["commit", "date", "subject", "/healthz µs", "/auth/me µs",
                       "me - healthz", "/auth/me user + system µs"], rows, "lllrrrr"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
