"""mTLS peers: Envoy's principal, certificate chains, XFCC from trusted proxies."""

from __future__ import annotations

import pytest
from cryptography import x509

from authz.authn.peer import (
    PeerFacts,
    PeerPolicy,
    authenticate_peer,
    parse_xfcc,
    verify_svid_chain,
)
from authz.authn.trust import TrustBundles, TrustDomainBundle
from authz.errors import InvalidPeer
from meshward.spiffe import SpiffeId, TrustDomain
from tests.support.certs import T0, TestPki, url_encoded_pem

NOW = T0
PKI = TestPki("meshward.test")
OTHER = TestPki("other.test")
BUNDLES = TrustBundles.of(TrustDomainBundle(TrustDomain("meshward.test"), (PKI.root.cert,)))
WEB = "spiffe://meshward.test/ns/default/sa/web"
PROXIES = ["127.0.0.0/8", "spiffe://meshward.test/front-proxy"]
TRUSTING = PeerPolicy.build(True, PROXIES)
BARE = PeerPolicy.build(True, PROXIES, trust_bare_principal=True)


def cert_of(spiffe_path: str = "/ns/default/sa/web") -> str:
    return url_encoded_pem(*PKI.chain(PKI.leaf(path=spiffe_path)))


def test_valid_chain() -> None:
    leaf = PKI.leaf()
    spiffe_id, expires = verify_svid_chain(PKI.chain(leaf), BUNDLES, NOW)
    assert spiffe_id == SpiffeId.parse(WEB)
    assert expires == leaf.cert.not_valid_after_utc


@pytest.mark.parametrize(
    ("chain", "code"),
    [
        (OTHER.chain(OTHER.leaf(WEB)), "chain_untrusted"),
        (PKI.chain(PKI.leaf(ca=True)), "cert_leaf_is_ca"),
        ([], "cert_missing"),
    ],
    ids=["untrusted", "leaf-is-ca", "empty"],
)
def test_chain_defects_are_invalid_peers(chain: list[x509.Certificate], code: str) -> None:
    """The shared verifier's reasons (tests/unit/meshward/test_svid_chain.py) are the codes."""
    with pytest.raises(InvalidPeer) as info:
        verify_svid_chain(chain, BUNDLES, NOW)
    assert info.value.code == code


def test_expiry_exactly_at_not_after_is_still_valid() -> None:
    leaf = PKI.leaf(not_after=NOW)
    assert verify_svid_chain(PKI.chain(leaf), BUNDLES, NOW)[0] == SpiffeId.parse(WEB)


def test_principal_ignored_unless_trusted() -> None:
    facts = PeerFacts(principal=WEB, certificate=cert_of())
    assert authenticate_peer(facts, PeerPolicy(), BUNDLES, NOW) is None
    peer = authenticate_peer(facts, TRUSTING, BUNDLES, NOW)
    assert peer is not None
    assert peer.context() == {"spiffe_id": WEB, "trust_domain": "meshward.test"}


def test_bare_principal_refused_unless_explicitly_allowed() -> None:
    facts = PeerFacts(principal=WEB)
    with pytest.raises(InvalidPeer) as info:
        authenticate_peer(facts, TRUSTING, BUNDLES, NOW)
    assert info.value.code == "principal_without_certificate"
    peer = authenticate_peer(facts, BARE, BUNDLES, NOW)
    assert peer is not None
    assert peer.spiffe_id == SpiffeId.parse(WEB)
    assert peer.expires_at is None


def test_certificate_alone_names_the_peer() -> None:
    peer = authenticate_peer(PeerFacts(certificate=cert_of()), TRUSTING, BUNDLES, NOW)
    assert peer is not None
    assert peer.spiffe_id == SpiffeId.parse(WEB)


def test_certificate_must_match_principal() -> None:
    cert = url_encoded_pem(*PKI.chain(PKI.leaf(path="/other")))
    with pytest.raises(InvalidPeer) as info:
        authenticate_peer(PeerFacts(principal=WEB, certificate=cert), TRUSTING, BUNDLES, NOW)
    assert info.value.code == "principal_mismatch"
    good = url_encoded_pem(*PKI.chain(PKI.leaf()))
    peer = authenticate_peer(PeerFacts(principal=WEB, certificate=good), TRUSTING, BUNDLES, NOW)
    assert peer is not None
    assert peer.expires_at is not None


@pytest.mark.parametrize(
    ("principal", "reason"),
    [("web", "principal_not_spiffe"), ("spiffe://evil.test/web", "foreign_trust_domain")],
)
def test_bad_principal(principal: str, reason: str) -> None:
    with pytest.raises(InvalidPeer) as info:
        authenticate_peer(PeerFacts(principal=principal), BARE, BUNDLES, NOW)
    assert info.value.code == reason


def test_xfcc_only_from_trusted_proxy() -> None:
    xfcc = f"By=spiffe://meshward.test/front;URI={WEB}"
    untrusted = PeerFacts(address="10.1.2.3", xfcc=xfcc)
    assert authenticate_peer(untrusted, TRUSTING, BUNDLES, NOW) is None
    by_address = PeerFacts(address="127.0.0.1", xfcc=xfcc)
    peer = authenticate_peer(by_address, TRUSTING, BUNDLES, NOW)
    assert peer is not None and peer.spiffe_id == SpiffeId.parse(WEB)
    proxy_cert = cert_of("/front-proxy")
    by_id = PeerFacts(certificate=proxy_cert, address="10.1.2.3", xfcc=xfcc)
    peer = authenticate_peer(by_id, TRUSTING, BUNDLES, NOW)
    assert peer is not None and peer.spiffe_id == SpiffeId.parse(WEB)


def test_proxy_id_must_be_proven_by_certificate() -> None:
    xfcc = f"By=spiffe://meshward.test/front;URI={WEB}"
    bare = PeerFacts(principal="spiffe://meshward.test/front-proxy", address="10.1.2.3", xfcc=xfcc)
    with pytest.raises(InvalidPeer) as info:
        authenticate_peer(bare, TRUSTING, BUNDLES, NOW)
    assert info.value.code == "principal_without_certificate"


@pytest.mark.parametrize("value", ["", 'Cert=""', "By=spiffe://meshward.test/front"])
def test_xfcc_without_client_certificate_is_no_peer(value: str) -> None:
    facts = PeerFacts(principal=WEB, certificate=cert_of(), address="127.0.0.1", xfcc=value)
    assert authenticate_peer(facts, TRUSTING, BUNDLES, NOW) is None


def test_xfcc_certificate_verified() -> None:
    good = f'Hash=abc;Cert="{url_encoded_pem(*PKI.chain(PKI.leaf()))}"'
    peer = authenticate_peer(PeerFacts(address="127.0.0.1", xfcc=good), TRUSTING, BUNDLES, NOW)
    assert peer is not None
    assert peer.via == "xfcc"
    forged = f'Cert="{url_encoded_pem(*OTHER.chain(OTHER.leaf(WEB)))}"'
    with pytest.raises(InvalidPeer):
        authenticate_peer(PeerFacts(address="127.0.0.1", xfcc=forged), TRUSTING, BUNDLES, NOW)


XFCC_CASES = [
    ("By=a;URI=b", [{"by": ["a"], "uri": ["b"]}]),
    ('By=a;Subject="CN=x,O=y";URI=b', [{"by": ["a"], "subject": ["CN=x,O=y"], "uri": ["b"]}]),
    ("URI=a,URI=b", [{"uri": ["a"]}, {"uri": ["b"]}]),
    ("URI=a;URI=b", [{"uri": ["a", "b"]}]),
    ('Subject="a\\"b"', [{"subject": ['a"b']}]),
    ("", []),
]


@pytest.mark.parametrize(("value", "parsed"), XFCC_CASES)
def test_parse_xfcc(value: str, parsed: list[dict[str, list[str]]]) -> None:
    assert parse_xfcc(value) == parsed


@pytest.mark.parametrize("value", ['URI="unterminated', "novalue", "=x", "x" * 40000])
def test_parse_xfcc_rejects(value: str) -> None:
    with pytest.raises(InvalidPeer):
        parse_xfcc(value)
