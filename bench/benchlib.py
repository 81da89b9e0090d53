"""Shared plumbing for the benchmark scripts (not a benchmark itself).

Servers as child processes (optionally pinned to one CPU with ``taskset``), wrk runs and
their parsed output, tiny HTTP helpers on ``http.client``, authgate set-up (a database, a
user) and the machine description every result file carries.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
RESULTS = BENCH / "results"
VENV = REPO / ".venv"
VENV_PY = VENV / "bin" / "python"
AUTHGATE = VENV / "bin" / "authgate"
WRK = "/usr/bin/wrk"
# The peers live in the shared folder beside the repository (read-only).
PEERS_SRC = Path(os.environ.get("AUTHGATE_BENCH_PEERS", str(REPO.parent / "shared" / "peers")))
CACHE = Path(os.environ.get("AUTHGATE_BENCH_CACHE", "/tmp/authgate-bench-peers"))

# Not on the common-password list (the peers' "correct horse battery staple" is).
PASSWORD = "correct horse battery staple!"
PEER_PASSWORD = "correct horse battery staple"

SERVER_CPU = "0"
LOAD_CPU = "1"


class BenchError(Exception):
    """A benchmark could not be run as asked (a server did not start, a check failed)."""


# -- processes ----------------------------------------------------------------------------


def cpu_times(pid: int) -> tuple[int, int]:
    """A process's (user, system) CPU time so far (utime, stime from /proc, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])  # fields 14 and 15


def cpu_ticks(pid: int) -> int:
    """A process's CPU time so far (utime + stime, in clock ticks)."""
    return sum(cpu_times(pid))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cmd: list[str], cpu: str | None) -> list[str]:
    """``cmd`` run under ``taskset -c cpu`` (no pinning with ``cpu=None``)."""
    return ["taskset", "-c", cpu, *cmd] if cpu is not None else cmd


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without any ``AUTHGATE_*`` variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGATE_")}
    env.update(extra)
    return env


@dataclass
class Server:
    """A server process started by us, in its own process group, logging to a file."""

    name: str
    cmd: list[str]
    port: int
    env: dict[str, str]
    cwd: Path
    log_path: Path
    ready_path: str = "/"
    cpu: str | None = SERVER_CPU
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(pinned(self.cmd, self.cpu), cwd=self.cwd, env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode} on start:\n"
                                 f"{self.log_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, _, _ = request("GET", self.url + self.ready_path, timeout=2)
                if status < 500:
                    return self
            time.sleep(0.1)
        self.stop()
        raise BenchError(f"{self.name} did not answer {self.ready_path} within {timeout:.0f} s:\n"
                         f"{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM our process group, SIGKILL it after 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_bytes(self, pid: int | None = None) -> int:
        """Resident set size of the server process (``VmRSS``)."""
        text = Path(f"/proc/{pid or self.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
        if not match:
            raise BenchError(f"no VmRSS for {self.name}")
        return int(match.group(1)) * 1024

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def log_errors(self) -> list[str]:
        """Lines of the server log that look like errors (ERROR, CRITICAL, tracebacks)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        pattern = re.compile(r"\b(ERROR|CRITICAL|Traceback|Exception)\b")
        return [line for line in text.splitlines() if pattern.search(line)]

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- HTTP -----------------------------------------------------------------------------------


def request(method: str, url: str, body: bytes | str | None = None,
            headers: Mapping[str, str] | None = None,
            timeout: float = 30.0) -> tuple[int, list[tuple[str, str]], bytes]:
    """One request on a fresh connection: (status, headers, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                      timeout=timeout)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        data = body.encode() if isinstance(body, str) else body
        conn.request(method, path or "/", body=data, headers=dict(headers or {}))
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


def post_json(url: str, payload: Mapping[str, Any],
              headers: Mapping[str, str] | None = None) -> tuple[int, list[tuple[str, str]],
                                                                bytes]:
    return request("POST", url, json.dumps(payload),
                   {"Content-Type": "application/json", **(headers or {})})


def post_form(url: str, payload: Mapping[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
    from urllib.parse import urlencode

    return request("POST", url, urlencode(payload),
                   {"Content-Type": "application/x-www-form-urlencoded"})


def set_cookies(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The ``name -> value`` pairs of every ``Set-Cookie`` header."""
    found: dict[str, str] = {}
    for name, value in headers:
        if name.lower() == "set-cookie":
            pair = value.split(";", 1)[0].strip()
            cname, _, cvalue = pair.partition("=")
            found[cname] = cvalue
    return found


class KeepAlive:
    """One persistent HTTP/1.1 connection (``http.client``), for tight polling loops."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port
        self.timeout = timeout
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        self.reconnects = 0

    def request(self, method: str, path: str, body: str | bytes | None = None,
                headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        status, _, data = self.exchange(method, path, body, headers)
        return status, data

    def exchange(self, method: str, path: str, body: str | bytes | None = None,
                 headers: Mapping[str, str] | None = None
                 ) -> tuple[int, list[tuple[str, str]], bytes]:
        """(status, headers, body); reconnects once if the server closed the connection
        (counted in ``reconnects``: a new connection may reach another worker)."""
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=body, headers=dict(headers or {}))
                resp = self.conn.getresponse()
                return resp.status, resp.getheaders(), resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.reconnects += 1
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


# -- wrk ------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    non2xx: int
    socket_errors: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise BenchError(f"cannot parse wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(text: str) -> WrkResult:
    def pct(p: str) -> float:
        match = re.search(rf"^\s+{p}%\s+(\S+)", text, re.M)
        return _ms(match.group(1)) if match else float("nan")

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    if not rps or not total:
        raise BenchError(f"cannot parse wrk output:\n{text}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                     text)
    errors = ({k: int(v) for k, v in zip(("connect", "read", "write", "timeout"),
                                         sock.groups(), strict=True) if int(v)}
              if sock else {})
    return WrkResult(rps=float(rps.group(1)), p50_ms=pct("50"), p90_ms=pct("90"),
                     p99_ms=pct("99"), requests=int(total.group(1)),
                     non2xx=int(non2xx.group(1)) if non2xx else 0, socket_errors=errors,
                     duration_s=_ms(total.group(2) + total.group(3)) / 1000)


def wrk_cmd(url: str, *, connections: int, duration: float,
            headers: Mapping[str, str] | None = None, script: Path | None = None,
            threads: int = 1, cpu: str | None = LOAD_CPU, timeout_s: int = 10) -> list[str]:
    cmd = [WRK, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
           f"--timeout={timeout_s}s"]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(url)
    return pinned(cmd, cpu)


def run_wrk(url: str, **kwargs: Any) -> WrkResult:
    proc = start_wrk(url, **kwargs)
    return finish_wrk(proc)


def start_wrk(url: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(wrk_cmd(url, **kwargs), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish_wrk(proc: subprocess.Popen[str], timeout: float = 600) -> WrkResult:
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise BenchError(f"wrk failed ({proc.returncode}):\n{out}")
    return parse_wrk(out)


def lua_post(path: Path, body: str, content_type: str = "application/json") -> Path:
    """A wrk script that POSTs ``body`` on every request."""
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = [==[{body}]==]\n"
        f'wrk.headers["Content-Type"] = "{content_type}"\n')
    return path


def lua_post_each(path: Path, bodies: list[str],
                  content_type: str = "application/json") -> Path:
    """A wrk script that POSTs the ``bodies`` in turn, one per request."""
    items = ", ".join(f"[==[{body}]==]" for body in bodies)
    path.write_text(
        f"local bodies = {{{items}}}\n"
        "local n = 0\n"
        'wrk.method = "POST"\n'
        f'wrk.headers["Content-Type"] = "{content_type}"\n'
        "request = function()\n"
        "  n = n % #bodies + 1\n"
        "  return wrk.format(nil, nil, nil, bodies[n])\n"
        "end\n")
    return path


# -- numbers --------------------------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    data = [v for v in values if v == v]  # drop NaN
    return statistics.median(data) if data else float("nan")


def percentile(values: Iterable[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100)."""
    data = sorted(values)
    if not data:
        return float("nan")
    rank = max(1, min(len(data), int(-(-p * len(data) // 100))))
    return data[rank - 1]


def fmt_int(value: float) -> str:
    return "—" if value != value else f"{value:,.0f}"


def fmt_ms(value: float) -> str:
    if value != value:
        return "—"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def md_table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    marks = [":---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# -- authgate -------------------------------------------------------------------------------


def create_user(env: Mapping[str, str], username: str = "alice",
                password: str = PASSWORD, cwd: Path | None = None,
                roles: Iterable[str] = ()) -> None:
    """``authgate users create USERNAME --password-stdin`` (also migrates the database)."""
    role_args = [a for r in roles for a in ("--role", r)]
    proc = subprocess.run([str(AUTHGATE), "users", "create", username, "--password-stdin",
                           *role_args],
                          input=password, text=True, capture_output=True, env=dict(env),
                          cwd=cwd, check=False, timeout=120)
    if proc.returncode != 0:
        raise BenchError(f"authgate users create failed: {proc.stderr.strip()}")


def create_users(env: Mapping[str, str], usernames: Iterable[str], password: str = PASSWORD,
                 cwd: Path | None = None) -> None:
    """More users with one password, through the engine in one process (``authgate users
    create`` is a process each); the database must exist (:func:`create_user` first)."""
    code = ("import asyncio, sys\n"
            "from authgate import AuthGate, Settings\n"
            "async def main() -> None:\n"
            "    password = sys.stdin.read()\n"
            "    async with AuthGate(Settings()) as gate:\n"
            "        for name in sys.argv[1:]:\n"
            "            await gate.users.create_user(name, password)\n"
            "asyncio.run(main())\n")
    proc = subprocess.run([str(VENV_PY), "-c", code, *usernames], input=password, text=True,
                          capture_output=True, env=dict(env), cwd=cwd, check=False,
                          timeout=120)
    if proc.returncode != 0:
        raise BenchError(f"creating users failed: {proc.stderr.strip()[-500:]}")


def authgate_server(name: str, env: Mapping[str, str], workdir: Path, *, port: int | None = None,
                    workers: int = 1, cpu: str | None = SERVER_CPU) -> Server:
    port = port or free_port()
    cmd = [str(AUTHGATE), "serve", "--port", str(port)]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    return Server(name=name, cmd=cmd, port=port, env=dict(env), cwd=workdir,
                  log_path=workdir / f"{name}.log", ready_path="/healthz", cpu=cpu)


def authgate_login(base: str, username: str = "alice",
                   password: str = PASSWORD) -> tuple[str, str]:
    """(session cookie value, CSRF token) from ``POST /auth/login``."""
    status, headers, body = post_json(f"{base}/auth/login",
                                      {"username": username, "password": password})
    if status != 200:
        raise BenchError(f"POST /auth/login answered {status}: {body[:200]!r}")
    cookies = set_cookies(headers)
    value = cookies.get("__Host-authgate") or cookies.get("authgate")
    if not value:
        raise BenchError(f"no session cookie in the login response: {cookies}")
    return value, json.loads(body)["csrf_token"]


def authgate_token(base: str, username: str = "alice", password: str = PASSWORD) -> str:
    status, _, body = post_form(f"{base}/auth/token", {
        "grant_type": "password", "username": username, "password": password})
    if status != 200:
        raise BenchError(f"POST /auth/token answered {status}: {body[:200]!r}")
    return str(json.loads(body)["access_token"])


def authgate_api_key(base: str, token: str) -> str:
    """A new API key (``ag_…``, all of the user's scopes), made with an access token."""
    status, _, body = post_json(f"{base}/auth/api-keys", {"name": "bench"},
                                {"Authorization": f"Bearer {token}"})
    if status != 201:
        raise BenchError(f"POST /auth/api-keys answered {status}: {body[:200]!r}")
    return str(json.loads(body)["key"])


def metrics(base: str) -> dict[str, float]:
    """``/metrics`` as ``{"name{labels}": value}``."""
    status, _, body = request("GET", f"{base}/metrics")
    if status != 200:
        raise BenchError(f"GET /metrics answered {status}")
    out: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


# -- machine --------------------------------------------------------------------------------


def run_text(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (proc.stdout or proc.stderr).strip()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def package_version(python: Path, *names: str) -> dict[str, str]:
    """Installed versions of ``names`` in the environment of ``python``."""
    code = ("import json, sys\nfrom importlib.metadata import version, PackageNotFoundError\n"
            "out = {}\nfor n in sys.argv[1:]:\n    try: out[n] = version(n)\n"
            "    except PackageNotFoundError: out[n] = '-'\nprint(json.dumps(out))")
    text = run_text([str(python), "-c", code, *names])
    try:
        return dict(json.loads(text))
    except ValueError:
        return dict.fromkeys(names, "?")


def machine_info() -> dict[str, str]:
    mem = "?"
    with contextlib.suppress(OSError):
        total = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        if total:
            mem = f"{int(total.group(1)) / 1024 / 1024:.1f} GiB"
    authgate = package_version(VENV_PY, "authgate", "uvicorn", "starlette", "fastapi",
                               "SQLAlchemy", "cryptography", "PyJWT", "argon2-cffi",
                               "uvloop", "httptools")
    commit = run_text(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = run_text(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"])
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": mem,
        "kernel": platform.release(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "authgate": f"{authgate.pop('authgate')} (git {commit}{', src modified' if dirty else ''})",
        "authgate deps": ", ".join(f"{k} {v}" for k, v in authgate.items()),
        "wrk": run_text([WRK, "-v"]).splitlines()[0] if Path(WRK).exists() else "missing",
        "node": run_text(["node", "-v"]),
    }


def info_lines(info: Mapping[str, str]) -> str:
    return "\n".join(f"- **{k}**: {v}" for k, v in info.items())


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def _get_all(host: str, port: int, requests: list[bytes],
                   connections: int) -> dict[int, int]:
    import asyncio

    statuses: dict[int, int] = {}
    queue = iter(requests)

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for raw in queue:
                writer.write(raw)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                if length:
                    await reader.readexactly(int(length.group(1)))
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return statuses


def get_each(base: str, path: str, header_sets: list[dict[str, str]],
             connections: int = 8) -> tuple[dict[int, int], float]:
    """GET ``path`` once with each header set, on ``connections`` keep-alive connections.
    Returns ({status: count}, seconds)."""
    import asyncio

    parts = urlsplit(base)
    host = parts.hostname or "127.0.0.1"
    raws = []
    for headers in header_sets:
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{parts.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        raws.append(("\r\n".join(lines) + "\r\n\r\n").encode())
    start = time.perf_counter()
    statuses = asyncio.run(_get_all(host, parts.port or 80, raws, connections))
    return statuses, time.perf_counter() - start
