"""X.509-SVID chains verified against trust anchors, and the report ``ca svid inspect`` prints."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

import pytest
from cryptography import x509

from meshward.spiffe import SpiffeId, TrustDomain
from meshward.svid_chain import MAX_CHAIN, inspect_svid, verify_svid, verify_svid_chain
from meshward.x509_svid import InvalidSvid
from tests.support.certs import T0, TestPki

NOW = T0
PKI = TestPki("meshward.test")
OTHER = TestPki("other.test")
WEB = "spiffe://meshward.test/ns/default/sa/web"


def trusted(td: TrustDomain) -> Sequence[x509.Certificate]:
    return (PKI.root.cert,) if td == TrustDomain("meshward.test") else ()


def test_a_valid_chain_names_its_spiffe_id_and_expiry() -> None:
    leaf = PKI.leaf()
    spiffe_id, expires = verify_svid_chain(PKI.chain(leaf), trusted, NOW)
    assert spiffe_id == SpiffeId.parse(WEB)
    assert expires == leaf.cert.not_valid_after_utc


def test_the_window_is_where_every_certificate_on_the_path_is_valid() -> None:
    leaf = PKI.leaf(
        not_before=NOW - dt.timedelta(minutes=5), not_after=NOW + dt.timedelta(days=900)
    )
    chain = PKI.chain(leaf)
    verified = verify_svid(chain, trusted, NOW)
    assert verified.expires_at == leaf.cert.not_valid_after_utc
    assert verified.valid_from == leaf.cert.not_valid_before_utc  # the latest not_before
    # The leaf outlives its issuers: the chain stops verifying with the first of them.
    path = [*chain, PKI.root.cert]
    assert verified.valid_until == min(c.not_valid_after_utc for c in path)
    assert verified.valid_until < leaf.cert.not_valid_after_utc
    verify_svid(chain, trusted, verified.valid_until)
    with pytest.raises(InvalidSvid):
        verify_svid(chain, trusted, verified.valid_until + dt.timedelta(seconds=1))


CHAIN_DEFECTS: list[tuple[str, Callable[[], list[x509.Certificate]], str]] = [
    ("leaf-is-ca", lambda: PKI.chain(PKI.leaf(ca=True)), "cert_leaf_is_ca"),
    ("no-uri-san", lambda: PKI.chain(PKI.leaf([])), "cert_uri_san_count"),
    (
        "two-uri-sans",
        lambda: PKI.chain(PKI.leaf([WEB, "spiffe://meshward.test/x"])),
        "cert_uri_san_count",
    ),
    ("not-spiffe", lambda: PKI.chain(PKI.leaf("https://example.com/")), "cert_not_spiffe"),
    ("other-trust-domain", lambda: OTHER.chain(OTHER.leaf()), "foreign_trust_domain"),
    ("forged-trust-domain", lambda: OTHER.chain(OTHER.leaf(WEB)), "chain_untrusted"),
    ("missing-intermediate", lambda: [PKI.leaf().cert], "chain_untrusted"),
    (
        "expired",
        lambda: PKI.chain(PKI.leaf(not_after=NOW - dt.timedelta(seconds=1))),
        "cert_expired",
    ),
    (
        "not-yet-valid",
        lambda: PKI.chain(PKI.leaf(not_before=NOW + dt.timedelta(seconds=1))),
        "cert_not_yet_valid",
    ),
    ("leaf-signed-by-leaf", lambda: [PKI.leaf(issuer=PKI.leaf()).cert], "chain_untrusted"),
    ("too-long", lambda: PKI.chain(PKI.leaf()) * MAX_CHAIN, "chain_too_long"),
    ("empty", lambda: [], "cert_missing"),
]


@pytest.mark.parametrize(
    ("chain_factory", "reason"), [c[1:] for c in CHAIN_DEFECTS], ids=[c[0] for c in CHAIN_DEFECTS]
)
def test_chain_defects_rejected(
    chain_factory: Callable[[], list[x509.Certificate]], reason: str
) -> None:
    with pytest.raises(InvalidSvid) as info:
        verify_svid_chain(chain_factory(), trusted, NOW)
    assert info.value.reason == reason


def test_expiry_is_checked_one_second_either_side_of_not_after() -> None:
    chain = PKI.chain(PKI.leaf(not_after=NOW))
    assert verify_svid_chain(chain, trusted, NOW)[0] == SpiffeId.parse(WEB)
    with pytest.raises(InvalidSvid) as info:
        verify_svid_chain(chain, trusted, NOW + dt.timedelta(seconds=1))
    assert info.value.reason == "cert_expired"


def test_the_report_of_a_valid_svid() -> None:
    leaf = PKI.leaf(not_after=NOW + dt.timedelta(hours=1))
    report = inspect_svid(PKI.chain(leaf), trusted, "bundle.pem", NOW)
    assert report.valid
    doc = report.to_json()
    assert doc["spiffe_id"] == WEB and doc["valid"] is True and doc["problem"] is None
    assert doc["expires_in_seconds"] == 3600
    assert doc["chain_length"] == len(PKI.chain(leaf)) and doc["bundle"] == "bundle.pem"
    assert doc["issuer"] == leaf.cert.issuer.rfc4514_string()
    assert doc["serial"] == format(leaf.cert.serial_number, "x")
    assert list(doc) == [
        "spiffe_id",
        "issuer",
        "subject",
        "serial",
        "not_before",
        "not_after",
        "expires_in_seconds",
        "chain_length",
        "bundle",
        "valid",
        "problem",
    ]


def test_the_report_of_an_untrusted_svid_names_the_problem() -> None:
    report = inspect_svid(OTHER.chain(OTHER.leaf(WEB)), trusted, "other.pem", NOW)
    assert not report.valid
    assert report.to_json()["problem"] == "chain_untrusted"


def test_the_report_lists_every_uri_san_when_there_is_not_exactly_one() -> None:
    two = [WEB, "spiffe://meshward.test/x"]
    doc = inspect_svid(PKI.chain(PKI.leaf(two)), trusted, "b", NOW).to_json()
    assert doc["spiffe_id"] == two and doc["problem"] == "cert_uri_san_count"
