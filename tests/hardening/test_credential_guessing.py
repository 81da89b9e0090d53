"""Session-ID guessing is detected and stopped (SESS-24), on real processes so that clients
come from real, different source addresses (127.0.0.2 guesses, 127.0.0.3 is a user).

The module's server runs with the documented defaults: 300 refused credentials per address
per 60 s. Each test failed before credential guessing was counted (500 random session
cookies were 500 401s, each a cache miss read from Redis and the database, each a log line).
"""

from __future__ import annotations

import json
import secrets
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.blackbox.support import eventually, register, signed_in
from tests.conftest import Server, backend_server
from tests.helpers import AuthClient

pytestmark = pytest.mark.subprocess  # clients from distinct source addresses
ALL_BACKENDS = True

LIMIT, WINDOW = 300, 60  # CREDENTIAL_GUESS_LIMIT / _WINDOW's defaults (README)
GUESSER, USER = "127.0.0.2", "127.0.0.3"


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           contract_backend: str) -> Iterator[Server]:
    # None: the product's default, not the suite's (tests elsewhere send bad credentials)
    with backend_server(request, tmp_path_factory, contract_backend,
                        credential_guess_limit=None) as srv:
        yield srv


def from_address(server: Server, address: str) -> AuthClient:
    return server.client(transport=httpx.HTTPTransport(local_address=address))


def guess(client: AuthClient, n: int) -> Counter[int]:
    """``n`` requests for /auth/me, each with a random session cookie: their statuses."""
    statuses: Counter[int] = Counter()
    for _ in range(n):
        value = secrets.token_urlsafe(32)
        r = client.get("/auth/me", headers={"Cookie": f"{client.session_cookie}={value}"})
        statuses[r.status_code] += 1
        if r.status_code == 429:
            assert r.json()["error"] == "too_many_requests"
            assert 1 <= int(r.headers["retry-after"]) <= WINDOW
    return statuses


def audit(server: Server) -> list[dict[str, Any]]:
    done = server.cli("audit", "list", "--json")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def refusal_lines(server: Server) -> int:
    return sum("refused unauthorized" in line for line in server.log().splitlines())


def test_random_session_cookies_are_blocked_and_others_are_not(server: Server) -> None:
    user, _, _ = signed_in(server, transport=httpx.HTTPTransport(local_address=USER))
    logged_before = refusal_lines(server)
    with from_address(server, GUESSER) as guesser:
        statuses = guess(guesser, 500)
    # the first LIMIT are refused as usual, every one after that is throttled
    assert statuses == Counter({401: LIMIT, 429: 500 - LIMIT})
    # a security event (audit trail, with the address) and a WARNING line
    assert eventually(lambda: any(e["type"] == "credentials.guessing" and e["ip"] == GUESSER
                                  for e in audit(server)), 10)
    assert any("WARNING" in line and "event=credentials.guessing" in line and GUESSER in line
               for line in server.log().splitlines())
    # the refusals were not logged one by one once the address was blocked
    assert refusal_lines(server) - logged_before <= LIMIT
    # another client's valid cookie, and a new sign-in from there: unaffected
    assert user.get("/auth/me").status_code == 200
    other, _, _ = signed_in(server, transport=httpx.HTTPTransport(local_address=USER))
    assert other.get("/auth/me").status_code == 200
    # from the blocked address itself: a session this process holds still works
    mine, _, _ = signed_in(server, transport=httpx.HTTPTransport(local_address=GUESSER))
    assert mine.get("/auth/me").status_code == 200
    metrics = httpx.get(f"{server.url}/metrics").text
    assert f'authgate_throttled_total{{what="credential"}} {500 - LIMIT}.0' in metrics
    assert 'authgate_events_total{type="credentials.guessing"} 1.0' in metrics
    # the block ends after its window: a refusal is a 401 again, and one line sums it up
    server.advance(WINDOW + 1)
    with from_address(server, GUESSER) as guesser:
        assert guess(guesser, 1) == Counter({401: 1})
    assert eventually(lambda: f"{500 - LIMIT} more refused during it" in server.log(), 5)
    for c in (user, other, mine):
        c.close()


def test_api_keys_and_tokens_count_and_keys_are_blocked(server: Server) -> None:
    username, password, _ = register(server)
    with from_address(server, USER) as c:
        access = c.token(username, password).json()["access_token"]
        created = c.post("/auth/api-keys", json={"name": "ci"},
                         headers={"Authorization": f"Bearer {access}"})
        assert created.status_code == 201, created.text
        key = created.json()["key"]
        assert c.get("/auth/me", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    server.advance(WINDOW + 1)  # whatever the other test left behind has ended
    head, body, _ = access.split(".")[:3]
    with from_address(server, GUESSER) as guesser:
        forged = [f"{head}.{body}.{secrets.token_urlsafe(64)}" for _ in range(LIMIT // 2)]
        keys = [f"ag_{secrets.token_urlsafe(32)}" for _ in range(LIMIT - LIMIT // 2)]
        for bearer in forged + keys:  # forged tokens and unknown keys: both count
            r = guesser.get("/auth/me", headers={"Authorization": f"Bearer {bearer}"})
            assert r.status_code == 401
        unknown = guesser.get("/auth/me", headers={
            "Authorization": f"Bearer ag_{secrets.token_urlsafe(32)}"})
        assert unknown.status_code == 429  # an API key this process does not hold
        # a token is verified as ever (no backend read): still the token's own answer
        assert guesser.get("/auth/me", headers={
            "Authorization": f"Bearer {forged[0]}"}).status_code == 401
        assert guesser.get("/auth/me", headers={
            "Authorization": f"Bearer {access}"}).status_code == 200
        # a key this process has checked before keeps working, whoever sends it
        assert guesser.get("/auth/me", headers={
            "Authorization": f"Bearer {key}"}).status_code == 200
