"""Revocation at the CA: issuance needs a live entry or a node's agent record not evicted."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ca.errors import BadRequest, NotEntitled, NotFound
from ca.service import Caller, CertificateAuthority
from ca.store.protocol import Entry
from meshward.clock import FixedClock
from meshward.selectors import node_selector
from meshward.spiffe import SpiffeId
from tests.support.ca import in_process_ca, new_csr, register

WEB = SpiffeId.parse("spiffe://example.org/ns/prod/sa/web")
NODE = SpiffeId.parse("spiffe://example.org/meshward/node/n1")
CLI = Caller(address="test")


def _node(ca: CertificateAuthority) -> None:
    """NODE attests with a join token (its agent record is made then)."""
    token = ca.create_join_token(NODE, 600, CLI)
    ca.issue_x509(new_csr()[0], token, Caller(address="node"))


def test_renewal_after_entry_deletion_is_refused(tmp_path: Path) -> None:
    ca = in_process_ca(tmp_path)
    entry = register(ca, WEB)
    peer = Caller(peer_id=WEB)
    ca.issue_x509(new_csr()[0], None, peer)
    ca.issue_jwt(["db"], None, peer)
    ca.remove_entry(entry.id, CLI)
    for call in (
        lambda: ca.issue_x509(new_csr()[0], None, peer),
        lambda: ca.issue_jwt(["db"], None, peer),
    ):
        with pytest.raises(NotEntitled) as err:
            call()
        assert err.value.code == "no_entry" and err.value.status == 403
    assert ca.store.list_audit()[-1].result == "no_entry"


def test_ttl_field_shortens_but_never_stretches(tmp_path: Path) -> None:
    clock = FixedClock()
    ca = in_process_ca(tmp_path, clock)
    register(ca, WEB)  # no TTL of its own: the CA default, 1 h
    peer = Caller(peer_id=WEB)
    hour = clock.now() + dt.timedelta(hours=1)
    assert ca.issue_x509(new_csr()[0], None, peer, ttl=86400).not_after == hour
    assert ca.issue_x509(new_csr()[0], None, peer, ttl=600).not_after == hour - dt.timedelta(
        seconds=3000
    )
    assert ca.issue_jwt(["a"], None, peer, ttl=3600).expires_at == clock.now() + dt.timedelta(
        seconds=300
    )
    short = SpiffeId.parse("spiffe://example.org/short")
    register(ca, short, x509_ttl=900)
    got = ca.issue_x509(new_csr()[0], None, Caller(peer_id=short), ttl=86400)
    assert got.not_after == clock.now() + dt.timedelta(seconds=900)


@pytest.mark.parametrize(("kind", "ttl"), [("x509", 299), ("jwt", 29), ("x509", 1)])
def test_minimum_ttl(tmp_path: Path, kind: str, ttl: int) -> None:
    ca = in_process_ca(tmp_path)
    register(ca, WEB)
    peer = Caller(peer_id=WEB)
    with pytest.raises(BadRequest) as err:
        if kind == "x509":
            ca.issue_x509(new_csr()[0], None, peer, ttl=ttl)
        else:
            ca.issue_jwt(["a"], None, peer, ttl=ttl)
    assert err.value.code == "ttl_too_short" and err.value.status == 400
    with pytest.raises(BadRequest) as err2:
        register(ca, WEB, **{f"{kind}_ttl": ttl})
    assert err2.value.code == "ttl_too_short"


def test_minimum_ttl_is_accepted_exactly(tmp_path: Path) -> None:
    clock = FixedClock()
    ca = in_process_ca(tmp_path, clock)
    register(ca, WEB, x509_ttl=300, jwt_ttl=30)
    peer = Caller(peer_id=WEB)
    assert ca.issue_x509(new_csr()[0], None, peer).not_after == clock.now() + dt.timedelta(
        seconds=300
    )
    assert ca.issue_jwt(["a"], None, peer).expires_at == clock.now() + dt.timedelta(seconds=30)


def test_join_token_node_gets_an_agent_record_and_eviction_cuts_it_off(tmp_path: Path) -> None:
    clock = FixedClock()
    ca = in_process_ca(tmp_path, clock)
    workload = register(ca, WEB, node_selector(NODE), "unix:uid:1000")
    _node(ca)
    record = ca.store.get_agent(NODE)
    assert record is not None and record.attestation == "join_token" and not record.evicted
    node = Caller(peer_id=NODE)
    clock.advance(60)
    renewed = ca.issue_x509(new_csr()[0], None, node)  # a node renews on its agent record
    after = ca.store.get_agent(NODE)
    assert after is not None and after.serial == format(renewed.serial, "x")
    assert after.last_seen == clock.now() and after.first_seen == record.first_seen
    with pytest.raises(NotEntitled) as no_jwt:
        ca.issue_jwt(["a"], None, node)  # a JWT-SVID needs an entry
    assert no_jwt.value.code == "no_entry"
    clock.advance(30)
    assert [e.id for e in ca.agent_entries(node)] == [workload.id]
    synced = ca.store.get_agent(NODE)
    assert synced is not None and synced.last_seen == clock.now() and synced.serial == after.serial
    ca.agent_issue_x509(new_csr()[0].decode(), workload.id, node)
    ca.issue_x509(new_csr()[0], None, Caller(peer_id=WEB))  # delegated workload renews itself

    ca.evict_agent(NODE, CLI)
    calls = [
        lambda: ca.issue_x509(new_csr()[0], None, node),
        lambda: ca.agent_entries(node),
        lambda: ca.agent_issue_x509(new_csr()[0].decode(), workload.id, node),
        lambda: ca.agent_issue_jwt(workload.id, ["a"], node),
        # The evicted node's workloads stop renewing too, even with their own SVIDs.
        lambda: ca.issue_x509(new_csr()[0], None, Caller(peer_id=WEB)),
        lambda: ca.issue_jwt(["a"], None, Caller(peer_id=WEB)),
        # A leftover join token for the node does not bring it back.
        lambda: ca.issue_x509(
            new_csr()[0], ca.create_join_token(NODE, 600, CLI), Caller(address="x")
        ),
    ]
    for call in calls:
        with pytest.raises(NotEntitled) as err:
            call()
        assert err.value.code in ("agent_evicted", "no_entry"), err.value.code
    assert ca.store.list_audit()[-1].result == "agent_evicted"
    assert [a.evicted for a in ca.list_agents(CLI)] == [True]


def test_deleting_the_last_entry_of_a_join_token_identity_revokes_it(tmp_path: Path) -> None:
    ca = in_process_ca(tmp_path)
    first, second = register(ca, WEB), register(ca, WEB, "k8s:ns:other")
    token = ca.create_join_token(WEB, 600, CLI)
    ca.issue_x509(new_csr()[0], token, Caller(address="w"))  # also an agent record now
    peer = Caller(peer_id=WEB)
    ca.remove_entry(first.id, CLI)
    ca.issue_x509(new_csr()[0], None, peer)  # one entry left
    ca.remove_entry(second.id, CLI)
    with pytest.raises(NotEntitled) as err:
        ca.issue_x509(new_csr()[0], None, peer)
    assert err.value.code == "agent_evicted"
    record = ca.store.get_agent(WEB)
    assert record is not None and record.evicted


def test_entry_delegated_to_two_nodes_lives_while_one_is_not_evicted(tmp_path: Path) -> None:
    ca = in_process_ca(tmp_path)
    other = SpiffeId.parse("spiffe://example.org/meshward/node/n2")
    register(ca, WEB, node_selector(NODE), node_selector(other))
    _node(ca)
    ca.evict_agent(NODE, CLI)
    ca.issue_x509(new_csr()[0], None, Caller(peer_id=WEB))


def test_unknown_agent_and_eviction_of_nobody(tmp_path: Path) -> None:
    ca = in_process_ca(tmp_path)
    stranger = Caller(peer_id=SpiffeId.parse("spiffe://example.org/stranger"))
    with pytest.raises(NotEntitled) as err:
        ca.agent_entries(stranger)
    assert err.value.code == "unknown_agent"
    with pytest.raises(NotFound):
        ca.evict_agent(NODE, CLI)
    with pytest.raises(NotFound):
        ca.get_agent(NODE, CLI)


def test_node_from_before_agent_records_is_adopted(tmp_path: Path) -> None:
    ca = in_process_ca(tmp_path)
    register(ca, WEB, node_selector(NODE), "unix:uid:1")
    ca.issue_x509(new_csr()[0], None, Caller(peer_id=NODE))
    record = ca.store.get_agent(NODE)
    assert record is not None and record.attestation == "adopted"


def test_admin_svid_is_not_renewed(tmp_path: Path) -> None:
    ca = in_process_ca(tmp_path)
    admin = SpiffeId.parse("spiffe://example.org/meshward/admin")
    ca.add_entry(Entry("a", admin, admin=True), CLI)
    with pytest.raises(NotEntitled) as err:
        ca.issue_x509(new_csr()[0], None, Caller(peer_id=admin))
    assert err.value.code == "admin_needs_login"


def test_selectors_are_validated(tmp_path: Path) -> None:
    ca = in_process_ca(tmp_path)
    for bad in ("k8s:ns:", "nope:x:y", "unix:uid:abc", "agent:id:http://x", "unix:path:rel"):
        with pytest.raises(BadRequest) as err:
            register(ca, WEB, bad)
        assert err.value.code == "bad_selectors"
