"""Create N live sessions for an existing user through the engine, without HTTP.

    .venv/bin/python bench/mksessions.py sqlite:////tmp/x/bench.db 20000 cookies.txt [alice]

Writes one cookie value per line. Used by ``bench/run.py``'s memory measurement: the
server under test then loads each session by serving ``GET /auth/me`` with its cookie.
Sessions are made by ``Engine._new_session`` -- exactly what a login does after the
password check (record, SHA-256 of a fresh 256-bit value, one INSERT) minus the Argon2id
verification, which would make 20k sessions take ten minutes.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from authgate import AuthGate
from authgate.settings import Settings


async def make(database_url: str, count: int, out: Path, username: str) -> float:
    async with AuthGate(Settings(database_url=database_url)) as gate:
        user = await gate.users.user_by_name(username)
        if user is None:
            raise SystemExit(f"no user {username!r} in {database_url}")
        start = time.perf_counter()
        with out.open("w") as fh:
            for _ in range(count):
                value, _rec = await gate.sessions.start_session(user, False, "127.0.0.1",
                                                                "authgate-bench")
                fh.write(value + "\n")
        return time.perf_counter() - start


def main() -> None:
    if len(sys.argv) not in (4, 5):
        raise SystemExit(__doc__)
    url, count, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    username = sys.argv[4] if len(sys.argv) == 5 else "alice"
    elapsed = asyncio.run(make(url, count, out, username))
    print(f"{count} sessions in {elapsed:.1f} s ({count / elapsed:,.0f}/s)")


if __name__ == "__main__":
    main()
