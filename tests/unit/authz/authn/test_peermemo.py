"""PeerMemo: a remembered peer is served only while what proved it still proves it."""

from __future__ import annotations

import datetime as dt

import pytest

from authz.authn.peer import PeerFacts, PeerPolicy, authenticate_peer
from authz.authn.peermemo import PeerMemo
from authz.authn.trust import TrustBundles, TrustDomainBundle
from authz.errors import InvalidPeer
from meshward.spiffe import SpiffeId, TrustDomain
from tests.support.certs import T0, TestPki, url_encoded_pem

PKI = TestPki("meshward.test")
ROTATED = TestPki("meshward.test")  # the same trust domain under a new root
TD = TrustDomain("meshward.test")
BUNDLES = TrustBundles.of(TrustDomainBundle(TD, (PKI.root.cert,)))
WEB = "spiffe://meshward.test/ns/default/sa/web"
TRUSTING = PeerPolicy.build(True, ["127.0.0.0/8", "spiffe://meshward.test/front-proxy"])
SECOND = dt.timedelta(seconds=1)
NOT_BEFORE = T0 - dt.timedelta(minutes=10)
NOT_AFTER = T0 + dt.timedelta(minutes=10)


def chain_text(pki: TestPki = PKI, path: str = "/ns/default/sa/web") -> str:
    return url_encoded_pem(
        *pki.chain(pki.leaf(path=path, not_before=NOT_BEFORE, not_after=NOT_AFTER))
    )


FACTS = PeerFacts(principal=WEB, certificate=chain_text())


def test_remembers_a_verified_chain_and_answers_as_verification_does() -> None:
    memo = PeerMemo()
    first = memo.authenticate(FACTS, TRUSTING, BUNDLES, T0)
    assert first == authenticate_peer(FACTS, TRUSTING, BUNDLES, T0)
    assert first is not None and first.spiffe_id == SpiffeId.parse(WEB)
    assert len(memo) == 1
    assert memo.authenticate(FACTS, TRUSTING, BUNDLES, T0 + SECOND) is first


def test_an_expired_certificate_is_refused_even_when_remembered() -> None:
    memo = PeerMemo()
    assert memo.authenticate(FACTS, TRUSTING, BUNDLES, T0) is not None
    # Valid up to and including not_after, as the verification says ...
    assert memo.authenticate(FACTS, TRUSTING, BUNDLES, NOT_AFTER) is not None
    # ... and refused one second later, though the memo holds it.
    with pytest.raises(InvalidPeer) as info:
        memo.authenticate(FACTS, TRUSTING, BUNDLES, NOT_AFTER + SECOND)
    assert info.value.code == "cert_expired"
    with pytest.raises(InvalidPeer):  # and again: the failure is not remembered as a pass
        memo.authenticate(FACTS, TRUSTING, BUNDLES, NOT_AFTER + SECOND)


def test_a_certificate_not_yet_valid_is_refused_even_when_remembered() -> None:
    memo = PeerMemo()
    assert memo.authenticate(FACTS, TRUSTING, BUNDLES, NOT_BEFORE) is not None
    with pytest.raises(InvalidPeer) as info:
        memo.authenticate(FACTS, TRUSTING, BUNDLES, NOT_BEFORE - SECOND)
    assert info.value.code == "cert_not_yet_valid"


def test_a_new_bundle_empties_the_memo() -> None:
    memo = PeerMemo()
    assert memo.authenticate(FACTS, TRUSTING, BUNDLES, T0) is not None
    rotated = TrustBundles.of(TrustDomainBundle(TD, (ROTATED.root.cert,)))
    with pytest.raises(InvalidPeer) as info:  # the old root is gone: its chains no longer prove
        memo.authenticate(FACTS, TRUSTING, rotated, T0)
    assert info.value.code == "chain_untrusted"
    new_facts = PeerFacts(principal=WEB, certificate=chain_text(ROTATED))
    assert memo.authenticate(new_facts, TRUSTING, rotated, T0) is not None
    assert len(memo) == 1


def test_another_peer_policy_empties_the_memo() -> None:
    memo = PeerMemo()
    bare = PeerFacts(principal=WEB)
    allowing = PeerPolicy.build(True, [], trust_bare_principal=True)
    assert memo.authenticate(bare, allowing, BUNDLES, T0) is not None
    with pytest.raises(InvalidPeer) as info:
        memo.authenticate(bare, TRUSTING, BUNDLES, T0)
    assert info.value.code == "principal_without_certificate"


def test_failures_are_never_remembered() -> None:
    memo = PeerMemo()
    forged = PeerFacts(principal=WEB, certificate=chain_text(ROTATED))
    for _ in range(2):
        with pytest.raises(InvalidPeer):
            memo.authenticate(forged, TRUSTING, BUNDLES, T0)
    assert len(memo) == 0


def test_a_forwarded_peer_holds_only_while_the_proxy_certificate_does() -> None:
    memo = PeerMemo()
    proxy = chain_text(path="/front-proxy")
    facts = PeerFacts(certificate=proxy, address="10.1.2.3", xfcc=f"URI={WEB}")
    peer = memo.authenticate(facts, TRUSTING, BUNDLES, T0)
    assert peer is not None and peer.via == "xfcc"
    with pytest.raises(InvalidPeer) as info:
        memo.authenticate(facts, TRUSTING, BUNDLES, NOT_AFTER + SECOND)
    assert info.value.code == "cert_expired"


def test_the_address_counts_only_for_forwarded_certificates() -> None:
    memo = PeerMemo()
    xfcc = f"URI={WEB}"
    trusted = PeerFacts(address="127.0.0.1", xfcc=xfcc)
    assert memo.authenticate(trusted, TRUSTING, BUNDLES, T0) is not None
    untrusted = PeerFacts(address="10.9.9.9", xfcc=xfcc)
    assert memo.authenticate(untrusted, TRUSTING, BUNDLES, T0) is None


def test_bounded() -> None:
    memo = PeerMemo(max_entries=2)
    allowing = PeerPolicy.build(True, [], trust_bare_principal=True)
    for name in ("a", "b", "c"):
        memo.authenticate(PeerFacts(principal=f"{WEB}-{name}"), allowing, BUNDLES, T0)
    assert len(memo) <= 2
