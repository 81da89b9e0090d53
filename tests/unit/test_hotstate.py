"""In-process hot state: the LRU cache and expiry of revocation entries."""

from __future__ import annotations

from authgate.clock import ManualClock
from authgate.hotstate import BoundedCache, HotState, Memo


def test_bounded_cache_evicts_least_recently_used() -> None:
    cache: BoundedCache[str, int] = BoundedCache(3)
    for key in "abc":
        cache.put(key, 1)
    assert cache.get("a") == 1  # a is used, so b is now the oldest
    cache.put("d", 1)
    assert "a" in cache and "b" not in cache and len(cache) == 3


def test_revocations_are_kept_until_due_and_then_forgotten() -> None:
    clock = ManualClock(1000.0)
    hot = HotState(records=None, clock=clock)  # type: ignore[arg-type]
    hot.family_ttl = 60
    hot.receive("family:f1")
    hot.receive("jti:j1")
    clock.advance(30)
    hot.receive("family:f2")
    hot._housekeep()
    assert set(hot.revoked_families) == {"f1", "f2"} and "j1" in hot.denied_jtis
    clock.advance(31)  # f1 and j1 are due, f2 is not
    hot._housekeep()
    assert set(hot.revoked_families) == {"f2"} and hot.denied_jtis == {}
    hot.receive("family:f2")  # re-revoked later: kept until the later expiry
    clock.advance(30)
    hot._housekeep()
    assert "f2" in hot.revoked_families


def test_a_memo_holds_only_what_its_cache_holds() -> None:
    cache: BoundedCache[str, object] = BoundedCache(2)
    memo: Memo[str] = Memo(cache)
    assert memo.put("a", "made") == "made"
    assert memo.get("a") is None  # not cached: not memoized either
    cache.put("a", object())
    memo.put("a", "made")
    assert memo.get("a") == "made"
    cache.put("b", object())
    cache.put("c", object())  # evicts "a": the memo lets it go too
    assert memo.get("a") is None and len(memo) == 0
