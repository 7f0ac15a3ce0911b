from __future__ import annotations

import datetime as dt

import pytest
from spiffe.bundle.jwt_bundle.jwt_bundle import JwtBundle
from spiffe.spiffe_id.spiffe_id import TrustDomain as PyTrustDomain

from agent.model import Entry, HeldSvid, Snapshot
from agent.node import build_csr
from meshward.clock import FixedClock
from meshward.spiffe import SpiffeId
from tests.support.authority import LocalAuthority


def entry(entry_id: str, *selectors: str) -> Entry:
    return Entry(entry_id, SpiffeId.parse(f"spiffe://example.org/{entry_id}"), frozenset(selectors))


@pytest.mark.parametrize(
    ("selectors", "workload", "matches"),
    [
        ({"unix:uid:1000"}, {"unix:uid:1000", "unix:gid:1000"}, True),
        ({"unix:uid:1000", "unix:gid:50"}, {"unix:uid:1000", "unix:gid:1000"}, False),
        ({"unix:uid:1000", "unix:gid:1000"}, {"unix:uid:1000", "unix:gid:1000"}, True),
        ({"unix:uid:1001"}, {"unix:uid:1000"}, False),
        (set(), {"unix:uid:1000"}, False),  # no selectors matches nobody
        ({"unix:uid:10"}, {"unix:uid:100"}, False),  # no prefix matching
    ],
)
def test_entry_matches_all_selectors(
    selectors: set[str], workload: set[str], matches: bool
) -> None:
    assert entry("web", *selectors).matches(frozenset(workload)) is matches


async def _svid(authority: LocalAuthority, e: Entry) -> HeldSvid:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    chain = await authority.sign_x509(e, build_csr(e, key), None)
    return HeldSvid.create(e, chain, key)


async def test_held_svid_encodings_and_validity() -> None:
    clock = FixedClock(dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    authority = LocalAuthority(clock, ttl=600)
    svid = await _svid(authority, entry("web", "unix:uid:1"))
    assert svid.chain_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY" in svid.key_pem
    assert svid.not_after == clock.now() + dt.timedelta(seconds=600)
    assert svid.valid_at(clock.now())
    assert svid.valid_at(svid.not_after - dt.timedelta(seconds=1))
    assert not svid.valid_at(svid.not_after)
    with pytest.raises(ValueError):
        HeldSvid.create(svid.entry, [], svid.key)


async def test_snapshot_selects_by_workload() -> None:
    authority = LocalAuthority(FixedClock())
    web = await _svid(authority, entry("web", "unix:uid:1"))
    db = await _svid(authority, entry("db", "unix:uid:2"))
    both = await _svid(authority, entry("both", "unix:gid:9"))
    snap = Snapshot(1, authority.bundle(), (web, db, both))
    assert snap.svids_for(frozenset({"unix:uid:1"})) == (web,)
    assert snap.svids_for(frozenset({"unix:uid:2", "unix:gid:9"})) == (db, both)
    assert snap.svids_for(frozenset({"unix:uid:3"})) == ()
    assert snap.svid_by_id("spiffe://example.org/db") is db
    assert snap.svid_by_id("spiffe://example.org/none") is None


def test_bundle_jwt_jwks_parses_with_py_spiffe() -> None:
    authority = LocalAuthority(FixedClock())
    bundle = authority.bundle()
    parsed = JwtBundle.parse(PyTrustDomain("example.org"), bundle.jwt_jwks)
    assert set(parsed.jwt_authorities) == {authority.kid}
    assert bundle.same_keys(authority.bundle())
    before = authority.bundle()
    authority.rotate()
    assert not before.same_keys(authority.bundle())
