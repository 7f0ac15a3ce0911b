from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshward.spiffe import InvalidSpiffeId, SpiffeId, TrustDomain

VALID = [
    "spiffe://meshward.local",
    "spiffe://meshward.local/ns/shop/sa/frontend",
    "spiffe://a-b_c.9/x.y-z_0/A",
]

# Each invalid form the SPIFFE-ID specification names, with its reason code.
INVALID = [
    ("", "empty"),
    ("http://meshward.local/x", "wrong_scheme"),
    ("SPIFFE://meshward.local/x", "wrong_scheme"),
    ("spiffe://", "empty_trust_domain"),
    ("spiffe:///path", "empty_trust_domain"),
    ("spiffe://Meshward.local/x", "bad_trust_domain_char"),
    ("spiffe://mesh ward/x", "bad_trust_domain_char"),
    ("spiffe://user@meshward.local/x", "has_userinfo"),
    ("spiffe://meshward.local:8443/x", "has_port"),
    ("spiffe://meshward.local/x?q=1", "has_query"),
    ("spiffe://meshward.local/x#frag", "has_fragment"),
    ("spiffe://meshward.local/", "empty_segment"),
    ("spiffe://meshward.local//x", "empty_segment"),
    ("spiffe://meshward.local/x/", "empty_segment"),
    ("spiffe://meshward.local/./x", "dot_segment"),
    ("spiffe://meshward.local/x/..", "dot_segment"),
    ("spiffe://meshward.local/x%20y", "bad_path_segment_char"),
    ("spiffe://meshward.local/x y", "bad_path_segment_char"),
]


@pytest.mark.parametrize("value", VALID)
def test_valid_ids_round_trip(value: str) -> None:
    assert str(SpiffeId.parse(value)) == value


@pytest.mark.parametrize(("value", "reason"), INVALID)
def test_invalid_ids_are_refused_with_a_reason(value: str, reason: str) -> None:
    with pytest.raises(InvalidSpiffeId) as info:
        SpiffeId.parse(value)
    assert info.value.reason == reason


def test_ids_compare_only_to_their_own_kind() -> None:
    sid = SpiffeId.parse("spiffe://meshward.local/a")
    assert sid == SpiffeId.parse("spiffe://meshward.local/a")
    assert sid != "spiffe://meshward.local/a"  # type: ignore[comparison-overlap]  # on purpose
    assert sid.trust_domain == TrustDomain("meshward.local")
    assert sid.member_of(TrustDomain.parse("spiffe://meshward.local"))


def test_trust_domain_cannot_hold_a_path() -> None:
    with pytest.raises(InvalidSpiffeId) as info:
        TrustDomain.parse("spiffe://meshward.local/x")
    assert info.value.reason == "trust_domain_has_path"


_td = st.text("abcdefghijklmnopqrstuvwxyz0123456789.-_", min_size=1, max_size=30)
_seg = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_", min_size=1, max_size=12
).filter(lambda s: s not in (".", ".."))


@given(_td, st.lists(_seg, max_size=5))
def test_parse_render_is_identity(td: str, segments: list[str]) -> None:
    value = "spiffe://" + td + "".join("/" + s for s in segments)
    assert str(SpiffeId.parse(value)) == value
