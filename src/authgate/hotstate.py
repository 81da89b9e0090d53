"""Hot state: what every request consults, kept in this process and kept fresh.

The per-request check never needs a round trip once the answer is known: sessions, users,
verified tokens, revoked token families and denied ``jti`` live in dictionaries here. They
stay correct because every revocation is written to the database's ``revocations`` log in
the same transaction as the change, and each process tails that log every
``poll_interval`` seconds (a Redis channel, when configured, delivers it sooner). If the log
cannot be read for ``stale_after`` seconds, :meth:`HotState.ensure_fresh` raises
:class:`BackendUnavailable`: requests fail closed (503) rather than trust a stale cache.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from authgate.clock import Clock
from authgate.errors import BackendUnavailable
from authgate.models import ApiKeyRecord, Principal, Revocation, SessionRecord, User
from authgate.store.protocols import RevocationLog
from authgate.tasks import cancel

log = logging.getLogger("authgate")
K = TypeVar("K")
V = TypeVar("V")

MISSING = object()
_monotonic = time.monotonic


class BoundedCache(Generic[K, V]):
    """A dict that forgets its least recently used entries past ``capacity`` entries or,
    with ``max_bytes``, past that many bytes as ``size(key, value)`` estimates them."""

    def __init__(self, capacity: int, max_bytes: int | None = None,
                 size: Callable[[K, V], int] | None = None) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._size = size or _entry_size
        self._data: OrderedDict[K, V] = OrderedDict()
        self._sizes: dict[K, int] = {}
        self.bytes = 0
        #: dicts keyed like this cache that lose a key when it does (see :class:`Memo`)
        self.linked: list[dict[K, Any]] = []

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)  # least recently *used* goes first
        return value

    def __contains__(self, key: K) -> bool:
        return key in self._data

    def put(self, key: K, value: V) -> None:
        if self.max_bytes is not None:
            cost = self._size(key, value)
            if cost > self.max_bytes:  # would evict everything else: not worth keeping
                self.pop(key)
                return
            self.bytes += cost - self._sizes.get(key, 0)
            self._sizes[key] = cost
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.capacity or (
                self.max_bytes is not None and self.bytes > self.max_bytes):
            old, _ = self._data.popitem(last=False)
            self.bytes -= self._sizes.pop(old, 0)
            for linked in self.linked:
                linked.pop(old, None)

    def pop(self, key: K) -> None:
        self._data.pop(key, None)
        self.bytes -= self._sizes.pop(key, 0)
        for linked in self.linked:
            linked.pop(key, None)

    def clear(self) -> None:
        self._data.clear()
        self._sizes.clear()
        self.bytes = 0
        for linked in self.linked:
            linked.clear()

    def __len__(self) -> int:
        return len(self._data)

    def expire(self, predicate: Callable[[V], bool]) -> None:
        for key in [k for k, v in self._data.items() if predicate(v)]:
            self.pop(key)


class Memo(Generic[V]):
    """What was last made for a credential (a :class:`~authgate.models.Principal`), kept so
    a request need not build it again; the caller reuses it only while what it was made
    from (the record, the user: replaced, never changed, when the user changes) is the very
    same object it holds now.

    It holds an entry only while ``cache`` (the records' cache) holds its key, and loses it
    when the cache does: no bound of its own, no memory past the cache's, and no churn of
    its own. (A memo of its own size, cleared when full, rebuilt its entries all the time
    once more credentials were active than it held, and those short-lived objects set off a
    full garbage collection every few seconds: ~200 ms pauses with 100,000 cached sessions.)
    An entry is the value alone, no tuple around it: one object fewer per cached credential
    for each such collection to walk."""

    __slots__ = ("_cache", "_made")

    def __init__(self, cache: BoundedCache[str, Any]) -> None:
        self._cache = cache
        self._made: dict[str, V] = {}
        cache.linked.append(self._made)

    def get(self, key: str) -> V | None:
        return self._made.get(key)

    def put(self, key: str, value: V) -> V:
        if key in self._cache:  # else it could never be dropped with it
            self._made[key] = value
        return value

    def __len__(self) -> int:
        return len(self._made)


class SingleFlight(Generic[K, V]):
    """Concurrent cache misses for one key share one read: the first starts it, the others
    wait for its result (or its exception). After a restart, the 32 parallel requests of one
    page (or one client) for a session no cache holds make one round trip, not 32. The read
    runs as a task of its own: a caller that goes away does not cancel it for the others.

    ``generation`` is :attr:`HotState.generation` at the call: a caller joins only a read
    that began at the same generation, so a request that starts after a revocation was
    applied here never gets what a read begun before it found (it reads anew)."""

    def __init__(self) -> None:
        self._reads: dict[K, tuple[int, asyncio.Future[V]]] = {}

    async def run(self, key: K, read: Callable[[], Awaitable[V]], generation: int) -> V:
        found = self._reads.get(key)
        if found is not None and found[0] == generation:
            task = found[1]
        else:
            task = asyncio.ensure_future(read())
            self._reads[key] = (generation, task)
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: K, task: asyncio.Future[V]) -> None:
        found = self._reads.get(key)
        if found is not None and found[1] is task:
            del self._reads[key]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone away

    def __len__(self) -> int:
        return len(self._reads)


def _entry_size(key: Any, value: Any) -> int:
    """Bytes one cache entry holds, roughly: the key and the value (one level)."""
    return 100 + sys.getsizeof(key) + sys.getsizeof(value)  # + the OrderedDict's links


MEMO_ENTRY_BYTES = 250  # a memo entry: its dict slot, the Principal, its scopes
#: claims whose values repeat from token to token (the issuer's, the audience's, the grant's
#: scope): held once, as every claim name is, however many tokens are cached
SHARED_CLAIMS = frozenset({"iss", "aud", "client_id", "scope"})


def shared_claims(claims: dict[str, Any]) -> dict[str, Any]:
    """``claims`` as the verified-token cache holds them: the names and the repeating
    values interned (the same values, shared), ~730 bytes a token instead of ~1,500."""
    return {sys.intern(k): sys.intern(v) if k in SHARED_CLAIMS and isinstance(v, str) else v
            for k, v in claims.items()}


def _token_entry_size(key: Any, value: dict[str, Any]) -> int:
    """A verified token (its claims as :func:`shared_claims` leaves them, the shared
    strings not counted) and, since it goes when they go, its principal memo."""
    total = 100 + sys.getsizeof(key) + sys.getsizeof(value) + MEMO_ENTRY_BYTES
    for name, v in value.items():
        if name in SHARED_CLAIMS and isinstance(v, str):
            continue
        total += sys.getsizeof(v)
        if isinstance(v, list | tuple):
            total += sum(sys.getsizeof(item) for item in v)
    return total


VERIFIED_CACHE_BYTES = 64 * 1024 * 1024  # ~38k tokens of ~1.7 KB (TOKEN_CACHE_MB's default)


class HotState:
    """Caches plus the revocation watcher that keeps them honest."""

    def __init__(self, records: RevocationLog, clock: Clock, poll_interval: float = 0.25,
                 stale_after: float = 1.0, capacity: int = 200_000,
                 token_cache_bytes: int = VERIFIED_CACHE_BYTES) -> None:
        self.records = records
        self.clock = clock
        self.poll_interval = poll_interval
        self.stale_after = stale_after
        self.sessions: BoundedCache[str, SessionRecord] = BoundedCache(capacity)
        self.no_session: BoundedCache[str, bool] = BoundedCache(capacity)
        self.users: BoundedCache[str, User] = BoundedCache(capacity)
        self.api_keys: BoundedCache[str, ApiKeyRecord] = BoundedCache(capacity)
        self.no_api_key: BoundedCache[str, bool] = BoundedCache(capacity)
        self.verified: BoundedCache[str, dict[str, Any]] = BoundedCache(
            capacity, max_bytes=token_cache_bytes, size=_token_entry_size)
        #: the principal last made per cached session / verified token / API key
        self.session_principals: Memo[Principal] = Memo(self.sessions)
        self.token_principals: Memo[Principal] = Memo(self.verified)
        self.api_key_principals: Memo[Principal] = Memo(self.api_keys)
        self.revoked_families: dict[str, float] = {}
        self.denied_jtis: dict[str, float] = {}
        self.family_ttl = 0.0
        self._expiries: list[tuple[float, str, str]] = []
        self._cursor = 0  # see Records.revocations_since
        self._seen: dict[int, int] = {}  # log ids applied that may be read again: id -> mark
        # Bumped by every revocation applied: a cold read that started before and ends
        # after a bump may hold what was just revoked, and must not be cached (h06).
        self.generation = 0
        # The Redis session-cache epoch the database vouches for (see store/redis_backend.py).
        self.redis_epoch = 0
        self._fresh: dict[str, float] = {"db": 0.0}
        #: until when every source counts as fresh (monotonic): one comparison per request
        self.fresh_until = 0.0
        self._refreshers: dict[str, Callable[[], Awaitable[None]]] = {"db": self.poll}
        self._catching_up: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._down_logged = False

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, access_ttl: float) -> None:
        now = self.clock.now()
        self.family_ttl = access_ttl + 60
        self._cursor = await self.records.revocation_cursor()
        for fid in await self.records.revoked_families_since(now - self.family_ttl):
            self._remember(self.revoked_families, "family", fid, now + self.family_ttl)
        for jti, exp in await self.records.denied_jtis(now):
            self._remember(self.denied_jtis, "jti", jti, exp)
        self.mark_fresh("db")
        self._task = asyncio.create_task(self._watch(), name="authgate-revocations")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            await self.poll()

    async def poll(self) -> None:
        """Apply every revocation logged since the last poll."""
        try:
            events, cursor = await self.records.revocations_since(self._cursor)
        except BackendUnavailable:
            if not self._down_logged:
                log.error("revocation log unreachable: failing closed until it returns")
                self._down_logged = True
            return
        except Exception:  # never let the watcher die
            log.exception("revocation poll failed")
            return
        if self._down_logged:
            log.warning("revocation log reachable again")
            self._down_logged = False
            self.sessions.clear()  # we may have missed events: start over
            self.users.clear()
            self.api_keys.clear()
        seen = self._seen
        for event_id, key, mark in events:
            if event_id not in seen:  # a row read again while its neighbours settle
                seen[event_id] = mark
                self.receive(key)
        if cursor != self._cursor:
            self._cursor = cursor
            self._seen = {i: m for i, m in seen.items() if m >= cursor}
        self.mark_fresh("db")
        self._housekeep()

    def add_source(self, name: str, refresher: Callable[[], Awaitable[None]]) -> None:
        """Another place revocations come from; ``refresher`` checks it on demand."""
        self._refreshers[name] = refresher
        self.mark_fresh(name)

    def mark_fresh(self, source: str) -> None:
        """``source`` (``db``, ``redis``) was reachable just now."""
        self._fresh[source] = _monotonic()
        self.fresh_until = min(self._fresh.values()) + self.stale_after

    async def ensure_fresh(self) -> None:
        """Make sure no revocation source has been silent for longer than ``stale_after``.

        The request path first compares ``time.monotonic()`` with :attr:`fresh_until` and
        awaits this only once that has passed. When the background loop fell behind (an
        overloaded event loop), the request catches up itself, once for all concurrent
        requests; only if the source cannot be read does it raise
        :class:`BackendUnavailable` (503)."""
        now = _monotonic()
        if now - min(self._fresh.values()) <= self.stale_after:
            return
        for name, at in list(self._fresh.items()):
            if now - at > self.stale_after:
                task = self._catching_up.get(name)
                if task is None or task.done():
                    task = asyncio.ensure_future(self._refreshers[name]())
                    self._catching_up[name] = task
                await asyncio.shield(task)
                if _monotonic() - self._fresh[name] > self.stale_after:
                    raise BackendUnavailable(f"revocation state is stale ({name})")

    @property
    def healthy(self) -> bool:
        return _monotonic() - min(self._fresh.values()) <= self.stale_after

    def stale_sources(self) -> list[str]:
        now = _monotonic()
        return [name for name, at in self._fresh.items() if now - at > self.stale_after]

    # -- events ---------------------------------------------------------------------------

    def receive(self, key: str) -> None:
        """Apply one revocation in its logged and published form (``session:<hash>``,
        ``family:<id>``, ``jti:<jti>``, ``user:<id>``, ``redis:<epoch>``,
        ``api_key:<hash>``); what no :class:`Revocation` reads is ignored."""
        event = Revocation.parse(key)
        if event is not None:
            self.apply(event)

    def apply(self, event: Revocation) -> None:
        """Stop trusting what ``event`` names, in this process, now."""
        kind, value = event.kind, event.value
        now = self.clock.now()
        self.generation += 1
        if kind == "session":
            self.sessions.pop(value)
        elif kind == "family":
            self._remember(self.revoked_families, "family", value, now + self.family_ttl)
        elif kind == "jti":
            self._remember(self.denied_jtis, "jti", value, now + self.family_ttl)
        elif kind == "user":
            self.users.pop(value)
        elif kind == "api_key":
            self.api_keys.pop(value)
        elif kind == "redis" and value.isdigit() and int(value) > self.redis_epoch:
            # Every session entry in Redis written before is disowned (a tombstone may be
            # missing from it), and so is what was loaded from one: the database decides.
            self.redis_epoch = int(value)
            self.sessions.clear()

    def _remember(self, table: dict[str, float], kind: str, key: str, until: float) -> None:
        """Keep ``key`` in ``table`` until ``until`` (at least: a later expiry wins)."""
        if table.get(key, 0.0) < until:
            table[key] = until
            heapq.heappush(self._expiries, (until, kind, key))

    def _housekeep(self) -> None:
        """Forget revoked families and denied ``jti`` whose tokens have all expired: pops
        only what is due (a heap), so the cost does not grow with the number kept."""
        now = self.clock.now()
        while self._expiries and self._expiries[0][0] <= now:
            until, kind, key = heapq.heappop(self._expiries)
            table = self.revoked_families if kind == "family" else self.denied_jtis
            if table.get(key, 0.0) <= until:
                table.pop(key, None)

