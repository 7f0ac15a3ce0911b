"""JWT-SVID audience binding (pure): which ``aud`` values name a destination."""

from __future__ import annotations

import pytest

from authz.authn.audience import AudiencePolicy, check_audience, token_audiences
from authz.errors import InvalidToken

PAYMENTS = "spiffe://meshward.local/ns/shop/sa/payments"
CATALOG = "spiffe://meshward.local/ns/shop/sa/catalog"


@pytest.mark.parametrize(
    ("claim", "expected"),
    [("a", {"a"}), (["a", "b"], {"a", "b"}), (["a", "a"], {"a"})],
)
def test_aud_claim_shapes(claim: object, expected: set[str]) -> None:
    assert token_audiences(claim) == frozenset(expected)


@pytest.mark.parametrize("claim", [None, "", [], [""], [1], {"a": 1}, ["a"] * 65, 7])
def test_bad_aud_claims(claim: object) -> None:
    with pytest.raises(InvalidToken) as info:
        token_audiences(claim)
    assert info.value.code == "bad_aud"


@pytest.mark.parametrize(
    ("audiences", "destination", "policy", "ok"),
    [
        ({PAYMENTS}, PAYMENTS, AudiencePolicy(), True),
        ({CATALOG}, PAYMENTS, AudiencePolicy(), False),
        ({"payments"}, PAYMENTS, AudiencePolicy.build({PAYMENTS: ["payments"]}), True),
        ({"payments"}, CATALOG, AudiencePolicy.build({PAYMENTS: ["payments"]}), False),
        ({"meshward"}, PAYMENTS, AudiencePolicy(), False),
        ({"meshward"}, PAYMENTS, AudiencePolicy.build({}, ["meshward"]), True),
        ({""}, "", AudiencePolicy(), False),  # no destination: nothing names it
    ],
    ids=["own-id", "other-id", "alias", "alias-elsewhere", "mesh-wide", "opt-in", "empty"],
)
def test_check_audience(
    audiences: set[str], destination: str, policy: AudiencePolicy, ok: bool
) -> None:
    if ok:
        check_audience(frozenset(audiences), destination, policy)
        return
    with pytest.raises(InvalidToken) as info:
        check_audience(frozenset(audiences), destination, policy)
    assert info.value.code == "wrong_audience"
