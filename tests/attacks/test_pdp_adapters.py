"""Every bypass class of ``cases.ROWS`` through every adapter of a running PDP.

A row passes when the attacker's spelling gets the decision of its canonical
request (or, for an ambiguous request, a deny) on the adapter under test. The
controls show the same adapters do allow and deny, so a row cannot pass
because everything is denied.
"""

from __future__ import annotations

import pytest

from tests.attacks.cases import CONTROLS, ROWS, AttackRequest, Row
from tests.attacks.conftest import PDP_ADAPTERS
from tests.attacks.drivers import Driver

_PAIRS = [(a, row) for row in ROWS for a in PDP_ADAPTERS if row.applies_to(a)]


@pytest.mark.parametrize(("adapter", "row"), _PAIRS, ids=[f"{a}-{row.name}" for a, row in _PAIRS])
def test_row_decides_like_its_canonical_request(
    pdp_drivers: dict[str, Driver], adapter: str, row: Row
) -> None:
    driver = pdp_drivers[adapter]
    got = driver.allowed(row.request)
    expected = False if row.same_as is None else driver.allowed(row.same_as)
    assert got == expected, f"{row.name}: {row.request} decided {got}, expected {expected}"


_CONTROL_PAIRS = [(a, c) for c in CONTROLS for a in PDP_ADAPTERS]


@pytest.mark.parametrize(
    ("adapter", "control"), _CONTROL_PAIRS, ids=[f"{a}-{c[0]}" for a, c in _CONTROL_PAIRS]
)
def test_controls(
    pdp_drivers: dict[str, Driver], adapter: str, control: tuple[str, AttackRequest, bool]
) -> None:
    name, request, allowed = control
    assert pdp_drivers[adapter].allowed(request) is allowed, name
