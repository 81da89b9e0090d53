"""The first (uncached) check of an access token, signed vs encrypted, and their sizes.

    .venv/bin/python bench/token_micro.py [--number 2000] [--repeat 7]

Starts an engine with ``TOKEN_ENCRYPTION=true`` on a throw-away SQLite file, issues one
access token of each kind for the same claims (the signed one is what the JWE wraps), then
times :meth:`AccessTokens.verify` on each with :mod:`timeit`: that is the work done the
first time the server sees a token (later requests are answered from the verified-token
cache, the same for both; ``bench/instructions.py`` counts that path). Also times the JWE
decryption alone. Prints the best of ``--repeat`` runs, in µs per call, and the token
lengths in bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import timeit
from pathlib import Path
from typing import Any


async def tokens() -> tuple[Any, str, str, float]:
    from authgate.engine import Engine
    from authgate.settings import Settings

    workdir = Path(tempfile.mkdtemp(prefix="authgate-token-micro-"))
    settings = Settings(database_url=f"sqlite:///{workdir / 'micro.db'}",
                        public_url="https://auth.example", token_encryption=True)
    engine = Engine(settings)
    await engine.start()
    now = engine.clock.now()
    claims: dict[str, Any] = {"sub": "3f2b9c1e-6a4d-4e8b-9f0a-2c7d5e1b8a90",
                              "scope": "reports read", "roles": ["reports"],
                              "family_id": "b1e0c7a2-5d3f-4a9e-8c6b-0f2e4d1a7c35", "now": now}
    encrypted, _ = engine.tokens.issue(**claims)
    engine.tokens.encrypt = False
    signed, _ = engine.tokens.issue(**claims)
    engine.tokens.encrypt = True
    await engine.stop()
    return engine.tokens, signed, encrypted, now


def best_us(stmt: Any, number: int, repeat: int) -> float:
    return min(timeit.repeat(stmt, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    access, signed, encrypted, now = asyncio.run(tokens())
    assert signed.count(".") == 2 and encrypted.count(".") == 4
    assert access.verify(signed, now)["sub"] == access.verify(encrypted, now)["sub"]
    decrypt = access.keys.encryption.decrypt
    rows = [
        ("verify signed (JWS)", best_us(lambda: access.verify(signed, now), args.number,
                                        args.repeat)),
        ("verify encrypted (JWE + JWS)", best_us(lambda: access.verify(encrypted, now),
                                                 args.number, args.repeat)),
        ("  of which: JWE decrypt", best_us(lambda: decrypt(encrypted, now), args.number,
                                            args.repeat)),
    ]
    for name, us in rows:
        print(f"{name:30} {us:8.1f} µs")
    print(f"{'token size signed':30} {len(signed):8d} bytes")
    print(f"{'token size encrypted':30} {len(encrypted):8d} bytes "
          f"(+{len(encrypted) - len(signed)}, x{len(encrypted) / len(signed):.2f})")


if __name__ == "__main__":
    main()
