"""The store contract, on every backend: entries, single-use join tokens under
concurrency, audit — SQLite and a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ca.errors import Conflict, StoreUnavailable
from ca.replicas import DbRateLimiter
from ca.store.postgres import PostgresStore
from ca.store.protocol import AgentRecord, AuditRecord, CallerRates, CaStore, Entry, JoinToken
from ca.store.sqlite import SqliteStore
from meshward.clock import FixedClock
from meshward.spiffe import SpiffeId

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
WEB = SpiffeId.parse("spiffe://example.org/web")

OpenStore = Callable[[], CaStore]


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Opens a new connection (as another process would) to one test database."""
    opened: list[CaStore] = []
    if request.param == "sqlite":
        path = tmp_path / "db"

        def make() -> CaStore:
            opened.append(SqliteStore(path))
            return opened[-1]
    else:
        url = request.getfixturevalue("postgres_url")

        def make() -> CaStore:
            opened.append(PostgresStore(url, pool_size=4))
            return opened[-1]

    yield make
    for store in opened:
        store.close()


def test_satisfies_protocol(open_store: OpenStore) -> None:
    assert isinstance(open_store(), CaStore)


def test_entries_crud_and_persistence(open_store: OpenStore) -> None:
    store = open_store()
    entry = Entry("e1", WEB, frozenset({"k8s:ns:a", "k8s:sa:b"}), 600, 60, ("web.local",), False)
    store.add_entry(entry)
    with pytest.raises(Conflict):
        store.add_entry(entry)
    store.add_entry(Entry("e2", SpiffeId.parse("spiffe://example.org/admin"), admin=True))
    store.close()
    again = open_store()
    assert again.get_entry("e1") == entry
    assert again.entries_for(WEB) == [entry]
    assert [e.id for e in again.list_entries()] == ["e2", "e1"]
    assert again.remove_entry("e1") and not again.remove_entry("e1")
    assert again.get_entry("e1") is None


def test_entry_matching() -> None:
    entry = Entry("e", WEB, frozenset({"k8s:ns:a", "k8s:sa:b"}))
    assert entry.matches(frozenset({"k8s:ns:a", "k8s:sa:b", "k8s:pod:x"}))
    assert not entry.matches(frozenset({"k8s:ns:a"}))
    assert not Entry("e", WEB).matches(frozenset({"k8s:ns:a"}))  # no selectors: never


def test_token_single_use_and_expiry(open_store: OpenStore) -> None:
    store = open_store()
    store.add_token(JoinToken("h1", WEB, NOW + dt.timedelta(seconds=10)))
    with pytest.raises(Conflict):
        store.add_token(JoinToken("h1", WEB, NOW))
    assert not store.redeem_token("h1", NOW + dt.timedelta(seconds=10))  # at expiry
    assert store.redeem_token("h1", NOW + dt.timedelta(seconds=9))
    assert not store.redeem_token("h1", NOW)
    assert not store.redeem_token("unknown", NOW)
    record = store.get_token("h1")
    assert record is not None and record.used_at == NOW + dt.timedelta(seconds=9)
    assert record.expires_at == NOW + dt.timedelta(seconds=10)


def test_concurrent_redemption_exactly_one(open_store: OpenStore) -> None:
    # Two stores (two connections, as two processes would have) and many threads.
    stores = [open_store(), open_store()]
    stores[0].add_token(JoinToken("h", WEB, NOW + dt.timedelta(hours=1)))
    barrier = threading.Barrier(16)
    wins: list[bool] = []

    def redeem(i: int) -> None:
        barrier.wait()
        wins.append(stores[i % 2].redeem_token("h", NOW))

    threads = [threading.Thread(target=redeem, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1 and len(wins) == 16


def test_audit_round_trip(open_store: OpenStore) -> None:
    store = open_store()
    rec = AuditRecord(NOW, "x509_svid", "join_token", "10.0.0.1", "ok", str(WEB), "abc", NOW, None)
    store.append_audit(rec)
    store.append_audit(AuditRecord(NOW, "entry_add", "admin", "cli", "ok"))
    store.close()
    got = open_store().list_audit()
    assert got[0] == rec and got[1].action == "entry_add"
    assert got[0].time.tzinfo == dt.UTC


def test_audit_batch_is_one_transaction(open_store: OpenStore) -> None:
    store = open_store()
    rows = [AuditRecord(NOW, "x509_svid", "k8s", f"10.0.0.{i}", "ok") for i in range(5)]
    store.append_audits(rows)
    assert [r.caller for r in store.list_audit()] == [r.caller for r in rows]
    # A batch with one row the database cannot take stores none of its rows.
    poison = AuditRecord(NOW, "x509_svid", "k8s", "10.0.0.9", "ok", detail=object())  # type: ignore[arg-type]
    with pytest.raises(Exception):  # noqa: B017 (the driver's own error type)
        store.append_audits([AuditRecord(NOW, "x509_svid", "k8s", "10.0.0.8", "ok"), poison])
    assert [r.caller for r in store.list_audit()] == [r.caller for r in rows]
    store.append_audit(AuditRecord(NOW, "entry_add", "admin", "cli", "ok"))  # still usable
    assert store.list_audit()[-1].action == "entry_add"


def test_rate_buckets_are_shared_between_connections(open_store: OpenStore) -> None:
    clock = FixedClock()
    stores = [open_store(), open_store()]
    assert all(isinstance(s, CallerRates) for s in stores)
    limiters = [DbRateLimiter(s, rate=1.0, burst=3, clock=clock) for s in stores]  # type: ignore[arg-type]
    got = [limiters[i % 2].allow("caller", 0.0) for i in range(5)]
    assert got == [True, True, True, False, False]
    assert limiters[0].allow("other", 0.0)
    clock.advance(1)
    assert limiters[1].allow("caller", 0.0) and not limiters[0].allow("caller", 0.0)
    clock.advance(3600)
    assert limiters[0].prune() == 2


NODE = SpiffeId.parse("spiffe://example.org/meshward/node/n1")


def test_agent_record_keeps_first_seen_and_eviction(open_store: OpenStore) -> None:
    store = open_store()
    later = NOW + dt.timedelta(minutes=30)
    first = store.record_agent(AgentRecord(NODE, "join_token", NOW, NOW, "aa"))
    assert first == AgentRecord(NODE, "join_token", NOW, NOW, "aa", evicted=False)
    again = store.record_agent(AgentRecord(NODE, "join_token", later, later, "bb"))
    assert again.first_seen == NOW and again.last_seen == later and again.serial == "bb"
    assert store.evict_agent(NODE)
    assert not store.evict_agent(SpiffeId.parse("spiffe://example.org/meshward/node/none"))
    # A later renewal record never clears the eviction (an eviction that won a race stays).
    after = store.record_agent(AgentRecord(NODE, "join_token", later, later, "cc"))
    assert after.evicted and after.first_seen == NOW
    store.close()
    reopened = open_store()
    assert reopened.get_agent(NODE) == after
    assert reopened.get_agent(WEB) is None
    assert reopened.list_agents() == [after]
    assert after.to_json()["evicted"] is True


def test_sqlite_locked_past_the_busy_timeout_is_unavailable(tmp_path: Path) -> None:
    """Another process holding the write lock too long: StoreUnavailable (503), not a crash;
    reads go on (WAL), and writes resume once the lock is gone."""
    store = SqliteStore(tmp_path / "ca.db", busy_timeout=0.05)
    record = AuditRecord(dt.datetime(2030, 1, 1, tzinfo=dt.UTC), "x509_svid", "cli", "t", "ok")
    other = sqlite3.connect(tmp_path / "ca.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable):
            store.append_audits([record])
        assert store.list_audit() == []
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.append_audits([record])
    assert store.list_audit() == [record]
    store.close()


def test_sqlite_entries_read_again_after_a_change_are_the_new_ones(tmp_path: Path) -> None:
    """Parsed entries are reused only for a row that is equal in every column."""
    store = SqliteStore(tmp_path / "ca.db")
    web = SpiffeId.parse("spiffe://example.org/web")
    store.add_entry(Entry("e1", web, frozenset({"k8s:ns:a"}), x509_ttl=600))
    first = store.entries_for(web)
    assert store.entries_for(web) == first
    store.remove_entry("e1")
    store.add_entry(Entry("e1", web, frozenset({"k8s:ns:b"}), x509_ttl=600, admin=True))
    again = store.entries_for(web)
    assert again == [Entry("e1", web, frozenset({"k8s:ns:b"}), x509_ttl=600, admin=True)]
    assert store.get_entry("e1") == again[0]
    store.close()


def test_sqlite_take_tokens_in_one_transaction_answers_as_one_by_one(tmp_path: Path) -> None:
    one, batch = SqliteStore(tmp_path / "one.db"), SqliteStore(tmp_path / "batch.db")
    keys = ["a", "a", "b", "a", "b", "c", "a"]
    singly = [one.take_token(k, 100.0, 1.0, 3) for k in keys]
    assert singly == [True, True, True, True, True, True, False]
    assert batch.take_tokens(keys, 100.0, 1.0, 3) == singly
    assert batch.take_tokens(["a"], 101.0, 1.0, 3) == [True]  # one token back after 1 s
    one.close()
    batch.close()


def test_sqlite_write_batch_stores_agents_and_audit_rows_together_or_none(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "ca.db")
    at = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    agent = AgentRecord(NODE, "join_token", at, at, "ab")
    row = AuditRecord(at, "x509_svid", "join_token", "t", "ok", str(NODE), "ab")
    unbindable = AuditRecord(at, "x509_svid", "cli", object(), "ok")  # type: ignore[arg-type]
    with pytest.raises(sqlite3.Error):
        store.write_batch([agent], [row, unbindable])
    assert store.get_agent(NODE) is None and store.list_audit() == []
    store.write_batch([agent], [row])
    assert store.get_agent(NODE) == agent and store.list_audit() == [row]
    store.close()
