"""Replicas on one PostgreSQL, in process on a FixedClock: own signing CAs under one
root, one bundle, rotation taken in turns under the database lease, shared rate buckets."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from ca.errors import Conflict, NotInitialized
from ca.replicas import ROTATION_LEASE, DbAuthority
from ca.service import Caller, CertificateAuthority, init_authority, random_serial
from ca.store.postgres import PostgresStore
from meshward.clock import FixedClock
from meshward.settings import CaSettings
from meshward.spiffe import TrustDomain

PASS = b"test-passphrase-123"
SETTINGS = CaSettings(trust_domain="example.org", ca_ttl=6 * 3600)
ADMIN = Caller(address="cli")


@pytest.fixture
def store(postgres_url: str) -> Iterator[PostgresStore]:
    s = PostgresStore(postgres_url, pool_size=4)
    yield s
    s.close()


def _replica(store: PostgresStore, name: str, clock: FixedClock) -> CertificateAuthority:
    home = DbAuthority(store, name, clock, lease_seconds=30)
    s = SETTINGS
    home.join(PASS, s.key_type, s.jwt_key_type, s.ca_ttl, random_serial)
    return CertificateAuthority(
        home.load(PASS), store, SETTINGS, clock, files=home, passphrase=PASS
    )


def _init(store: PostgresStore, clock: FixedClock) -> None:
    authority = init_authority(
        TrustDomain("example.org"), SETTINGS, clock.now(), random_serial, label="r0"
    )
    DbAuthority(store, "r0", clock).init(authority, PASS)


def test_replicas_share_root_and_bundle(store: PostgresStore) -> None:
    clock = FixedClock()
    with pytest.raises(NotInitialized):
        _replica(store, "r1", clock)
    _init(store, clock)
    with pytest.raises(Conflict):
        _init(store, clock)
    a, b = _replica(store, "r1", clock), _replica(store, "r2", clock)
    a.tick()  # a loaded before b joined: it picks b up
    assert a.authority.root_cert == b.authority.root_cert
    assert a.authority.active.ca_cert != b.authority.active.ca_cert
    assert a.authority.bundle().to_json() == b.authority.bundle().to_json()
    bundle = a.authority.bundle()
    assert len(bundle.x509_authorities) == 4  # root, r0 (from init), r1, r2
    assert a.authority.active.jwt_kid in bundle.jwt_authorities
    assert b.authority.active.jwt_kid in bundle.jwt_authorities


def test_rotation_takes_turns_and_every_replica_picks_it_up(store: PostgresStore) -> None:
    clock = FixedClock()
    _init(store, clock)
    a, b = _replica(store, "r1", clock), _replica(store, "r2", clock)
    a.tick()
    clock.advance(SETTINGS.ca_ttl / 2 + 1)  # both are due to prepare
    # Another holder has the lease: nobody rotates, the next tick does.
    assert store.acquire_lease(ROTATION_LEASE, "someone", clock.now(), 60)
    assert not a.tick() and a.authority.next is None
    with pytest.raises(Conflict):
        b.rotate_prepare(ADMIN)
    clock.advance(61)
    assert a.tick() and a.authority.next is not None
    assert b.tick() and b.authority.next is not None  # prepared its own, after a's
    a.tick()
    bundle = a.authority.bundle()
    assert bundle.to_json() == b.authority.bundle().to_json()
    for replica in (a, b):
        assert replica.authority.next is not None
        assert replica.authority.next.ca_cert in bundle.x509_authorities
        assert replica.authority.next.jwt_kid in bundle.jwt_authorities
    assert store.authority_sequence() == a.authority.sequence == b.authority.sequence


def test_lease_is_exclusive_until_it_expires(store: PostgresStore) -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert store.acquire_lease("l", "a", now, 10)
    assert store.acquire_lease("l", "a", now, 10)  # the holder extends
    assert not store.acquire_lease("l", "b", now + dt.timedelta(seconds=9), 10)
    assert store.acquire_lease("l", "b", now + dt.timedelta(seconds=10), 10)
    store.release_lease("l", "a")  # not a's any more: nothing happens
    assert not store.acquire_lease("l", "a", now + dt.timedelta(seconds=11), 10)
    store.release_lease("l", "b")
    assert store.acquire_lease("l", "a", now + dt.timedelta(seconds=11), 10)
