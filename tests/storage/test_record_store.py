"""RecordStore (``Records``) on SQLite and PostgreSQL: what the engine relies on, asked
through the protocol's intent-named methods only."""

from __future__ import annotations

import asyncio
import time

import pytest

from authgate.errors import UsernameTaken
from authgate.models import SessionRecord, TokenFamily, User
from authgate.store import sessions as store_sessions
from authgate.store.db import Database
from authgate.store.passkeys import Passkey, PasskeyChallenge
from authgate.store.protocols import RecordStore
from authgate.store.records import Records


async def store(db: Database, *user_ids: str) -> RecordStore:
    """The record store on ``db``, with users ``user_ids``."""
    records = Records(db)
    for uid in user_ids:
        await records.create_user(User(id=uid, username=f"name-{uid}"), "hash")
    return records


def session(name: str, user_id: str, now: float, last_seen: float | None = None
            ) -> SessionRecord:
    return SessionRecord(id=f"s-{name}", token_hash=f"h-{name}", user_id=user_id,
                         csrf_token="c", created_at=now, last_seen_at=last_seen or now,
                         expires_at=now + 3600, idle_ttl=1800)


def family(name: str, user_id: str, now: float, last_seen: float | None = None
           ) -> TokenFamily:
    return TokenFamily(id=f"f-{name}", user_id=user_id, scope="", created_at=now,
                       last_seen_at=last_seen or now, expires_at=now + 3600)


async def logged_since(records: RecordStore, cursor: int) -> list[str]:
    events, _ = await records.revocations_since(cursor)
    return [key for _, key, _ in events]


async def test_usernames_are_unique_by_their_key(record_db: Database) -> None:
    records = await store(record_db)
    await records.create_user(User(id="u1", username="Ｊosé"), "hash-1")
    found = await records.user_with_hash("josé")
    assert found is not None and found[0].id == "u1" and found[1] == "hash-1"
    with pytest.raises(UsernameTaken):
        await records.create_user(User(id="u2", username="JOSÉ"), "hash-2")


async def test_deleting_sessions_needs_a_filter_spares_keep_and_logs(
        record_db: Database) -> None:
    records, now = await store(record_db, "u1", "u2"), time.time()
    for name in ("a", "b", "c"):
        await records.insert_session(session(name, "u1", now), None, now)
    await records.insert_session(session("other", "u2", now), None, now)
    with pytest.raises(ValueError, match="every row"):
        await records.delete_sessions(now)
    cursor = await records.revocation_cursor()
    keys = await records.delete_sessions(now, user_id="u1", keep="s-b")
    assert sorted(map(str, keys)) == ["session:h-a", "session:h-c"]
    assert sorted(await logged_since(records, cursor)) == sorted(map(str, keys))
    assert [s.id for s in await records.user_sessions("u1", now)] == ["s-b"]
    assert await records.get_session("h-other") is not None


async def test_one_flush_of_last_seen_times_writes_every_slice(
        record_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """``touch_sessions`` writes in slices of ``TOUCH_SLICE`` rows (so a big flush does not
    hold the event loop): every slice lands, and a time never moves backwards."""
    monkeypatch.setattr(store_sessions, "TOUCH_SLICE", 3)  # 1,000 in use: 3 here, 7 rows
    records, now = await store(record_db, "u1"), time.time()
    names = [f"t{i}" for i in range(7)]
    for name in names:
        await records.insert_session(session(name, "u1", now), None, now)
    seen = {f"s-{name}": now + 10 for name in names}
    seen[f"s-{names[0]}"] = now - 10  # older than what is stored: left as it is
    await records.touch_sessions(seen)
    stored = {s.id: s.last_seen_at for s in await records.user_sessions("u1", now)}
    assert stored.pop(f"s-{names[0]}") == pytest.approx(now)
    assert len(stored) == len(names) - 1
    assert all(at == pytest.approx(now + 10) for at in stored.values())


async def test_a_cap_evicts_the_least_recently_used_entry(record_db: Database) -> None:
    records, now = await store(record_db, "u1"), time.time()
    await records.insert_session(session("old", "u1", now, last_seen=now - 60), None, now)
    await records.create_family(family("fam", "u1", now, last_seen=now - 30), "r-1",
                                now + 3600, None, now)
    evicted = await records.insert_session(session("new", "u1", now), 2, now)
    assert list(map(str, evicted)) == ["session:h-old"]
    evicted = await records.insert_session(session("newer", "u1", now + 1), 2, now + 1)
    assert list(map(str, evicted)) == ["family:f-fam"]
    assert await records.user_families("u1", now) == []


async def test_a_refresh_token_is_single_use_and_reuse_revokes_the_family(
        record_db: Database) -> None:
    records, now = await store(record_db, "u1"), time.time()
    await records.create_family(family("x", "u1", now), "r-1", now + 3600, None, now)
    outcome, fam = await records.rotate_refresh("r-1", "r-2", now, 0, None)
    assert outcome == "ok" and fam is not None and fam.id == "f-x"
    cursor = await records.revocation_cursor()
    outcome, _ = await records.rotate_refresh("r-1", "r-3", now + 1, 0, None)
    assert outcome == "reuse"
    assert await logged_since(records, cursor) == ["family:f-x"]
    assert (await records.rotate_refresh("r-2", "r-4", now + 2, 0, None))[0] == "invalid"
    assert await records.revoked_families_since(now - 1) == ["f-x"]


async def test_revoking_families_spares_keep(record_db: Database) -> None:
    records, now = await store(record_db, "u1"), time.time()
    for name in ("a", "b"):
        await records.create_family(family(name, "u1", now), f"r-{name}", now + 3600,
                                    None, now)
    revoked = await records.revoke_families(now, user_id="u1", keep="f-b")
    assert list(map(str, revoked)) == ["family:f-a"]
    assert [f.id for f in await records.user_families("u1", now)] == ["f-b"]
    assert await records.revoke_families(now, user_id="u1", keep="f-b") == []


async def test_a_jti_is_denied_and_logged_once(record_db: Database) -> None:
    records, now = await store(record_db, "u1"), time.time()
    cursor = await records.revocation_cursor()
    assert await records.deny_jti("j-1", now + 60, now) is True
    assert await records.deny_jti("j-1", now + 60, now) is False
    assert await logged_since(records, cursor) == ["jti:j-1"]
    assert await records.denied_jtis(now) == [("j-1", now + 60)]


async def test_the_redis_epoch_only_grows_and_is_logged(record_db: Database) -> None:
    records, now = await store(record_db, "u1"), time.time()
    start = await records.redis_epoch()
    cursor = await records.revocation_cursor()
    assert await records.bump_redis_epoch(now) == start + 1
    assert await records.redis_epoch() == start + 1
    assert await logged_since(records, cursor) == [f"redis:{start + 1}"]


async def test_purge_removes_what_expired_only(record_db: Database) -> None:
    records, now = await store(record_db, "u1"), time.time()
    await records.insert_session(session("live", "u1", now), None, now)
    await records.insert_session(session("gone", "u1", now - 7200), None, now - 7200)
    await records.deny_jti("j-old", now - 1, now - 10)
    counts = await records.purge(now)
    assert counts["sessions"] == 1 and counts["denied_jtis"] == 1
    assert await records.get_session("h-live") is not None
    assert await records.get_session("h-gone") is None


async def test_user_search_pages_by_key_and_matches_name_or_address(
        record_db: Database) -> None:
    records = await store(record_db)
    for i, name in enumerate(["Carol", "alice", "Bob", "dave_x", "Eve%"]):
        await records.create_user(User(id=f"s{i}", username=name,
                                       email=f"{name.lower()}@Mail.example"), "hash")
    page = await records.search_users("", None, 2)
    assert [u.username for _, u in page] == ["alice", "Bob"]  # by key: case-folded
    page = await records.search_users("", page[-1][0], 2)
    assert [u.username for _, u in page] == ["Carol", "dave_x"]
    page = await records.search_users("", page[-1][0], 2)
    assert [u.username for _, u in page] == ["Eve%"]
    assert [u.username for _, u in await records.search_users("O", None, 10)] == [
        "Bob", "Carol"]
    assert [u.username for _, u in await records.search_users("MAIL.EX", None, 2)] == [
        "alice", "Bob"]  # the address, case-insensitively
    # LIKE's wildcards are literal characters here.
    assert [u.username for _, u in await records.search_users("%", None, 10)] == ["Eve%"]
    assert [u.username for _, u in await records.search_users("_x", None, 10)] == [
        "dave_x"]
    assert await records.search_users("zzz", None, 10) == []
def passkey(name: str, user_id: str, now: float, count: int = 0) -> Passkey:
    return Passkey(id=f"p-{name}", user_id=user_id, credential_id=f"cred-{name}",
                   public_key="pk", sign_count=count, transports=("internal",), name=name,
                   aaguid="", backup_eligible=False, backed_up=False, created_at=now,
                   last_used_at=None)


async def test_passkeys_are_unique_owned_and_their_counter_moves_once(
        record_db: Database) -> None:
    records, now = await store(record_db, "u1", "u2"), time.time()
    assert await records.add_passkey(passkey("a", "u1", now, count=3))
    assert not await records.add_passkey(passkey("a", "u2", now))  # credential id taken
    assert [k.id for k in await records.user_passkeys("u1")] == ["p-a"]
    assert await records.user_passkeys("u2") == []
    assert not await records.rename_passkey("u2", "p-a", "mine")  # not theirs
    assert await records.delete_passkey("u2", "p-a") is None
    # two uses that read the same counter: one moves it
    done = await asyncio.gather(*(records.use_passkey("p-a", 3, 4, False, now)
                                  for _ in range(4)))
    assert sorted(done) == [False, False, False, True]
    found = await records.passkey_by_credential("cred-a")
    assert found is not None and found.sign_count == 4 and found.last_used_at == now
    await records.delete_user("u1")  # by cascade
    assert await records.passkey_by_credential("cred-a") is None


async def test_all_of_a_users_passkeys_are_deleted_and_only_theirs(
        record_db: Database) -> None:
    records, now = await store(record_db, "u1", "u2"), time.time()
    for name, owner in (("a", "u1"), ("b", "u1"), ("c", "u2")):
        assert await records.add_passkey(passkey(name, owner, now))
    gone = await records.delete_user_passkeys("u1")
    assert sorted(k.name for k in gone) == ["a", "b"]
    assert await records.user_passkeys("u1") == []
    assert [k.id for k in await records.user_passkeys("u2")] == ["p-c"]
    assert await records.delete_user_passkeys("u1") == []


async def test_a_passkey_challenge_is_taken_once_bound_and_unexpired(
        record_db: Database) -> None:
    records, now = await store(record_db, "u1"), time.time()
    for name, expires in (("c1", now + 300), ("c2", now + 300), ("old", now - 1)):
        await records.put_challenge(PasskeyChallenge(name, "mfa", "b", "u1", expires), now - 2)
    taken = await asyncio.gather(*(records.take_challenge("c1", "mfa", "b", now)
                                   for _ in range(4)))
    assert [c.challenge_hash for c in taken if c is not None] == ["c1"]
    # presented with the wrong binding: refused, and used up all the same
    assert await records.take_challenge("c2", "mfa", "other", now) is None
    assert await records.take_challenge("c2", "mfa", "b", now) is None
    assert await records.take_challenge("old", "mfa", "b", now) is None
    # a stateless challenge is recorded as spent once
    spent = await asyncio.gather(*(records.spend_challenge("s1", now + 300, now)
                                   for _ in range(4)))
    assert sorted(spent) == [False, False, False, True]
