"""The SQLite store: entries, single-use join tokens under concurrency, audit."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest

from ca.errors import Conflict
from ca.store.protocol import AgentRecord, AuditRecord, CaStore, Entry, JoinToken
from ca.store.sqlite import SqliteStore
from meshward.spiffe import SpiffeId

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
WEB = SpiffeId.parse("spiffe://example.org/web")


def test_satisfies_protocol(tmp_path: Path) -> None:
    assert isinstance(SqliteStore(tmp_path / "db"), CaStore)


def test_entries_crud_and_persistence(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    entry = Entry("e1", WEB, frozenset({"k8s:ns:a", "k8s:sa:b"}), 600, 60, ("web.local",), False)
    store.add_entry(entry)
    with pytest.raises(Conflict):
        store.add_entry(entry)
    store.add_entry(Entry("e2", SpiffeId.parse("spiffe://example.org/admin"), admin=True))
    store.close()
    again = SqliteStore(tmp_path / "db")
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


def test_token_single_use_and_expiry(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    store.add_token(JoinToken("h1", WEB, NOW + dt.timedelta(seconds=10)))
    assert not store.redeem_token("h1", NOW + dt.timedelta(seconds=10))  # at expiry
    assert store.redeem_token("h1", NOW + dt.timedelta(seconds=9))
    assert not store.redeem_token("h1", NOW)
    assert not store.redeem_token("unknown", NOW)
    record = store.get_token("h1")
    assert record is not None and record.used_at == NOW + dt.timedelta(seconds=9)


def test_concurrent_redemption_exactly_one(tmp_path: Path) -> None:
    # Two stores (two connections, as two processes would have) and many threads.
    stores = [SqliteStore(tmp_path / "db"), SqliteStore(tmp_path / "db")]
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


def test_audit_round_trip(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    rec = AuditRecord(NOW, "x509_svid", "join_token", "10.0.0.1", "ok", str(WEB), "abc", NOW, None)
    store.append_audit(rec)
    store.append_audit(AuditRecord(NOW, "entry_add", "admin", "cli", "ok"))
    store.close()
    got = SqliteStore(tmp_path / "db").list_audit()
    assert got[0] == rec and got[1].action == "entry_add"


NODE = SpiffeId.parse("spiffe://example.org/meshward/node/n1")


def test_agent_record_keeps_first_seen_and_eviction(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
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
    reopened = SqliteStore(tmp_path / "db")
    assert reopened.get_agent(NODE) == after
    assert reopened.get_agent(WEB) is None
    assert reopened.list_agents() == [after]
    assert after.to_json()["evicted"] is True
