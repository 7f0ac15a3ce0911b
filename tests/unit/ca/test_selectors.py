"""Selector types: typos are refused with the known types; good ones pass."""

from __future__ import annotations

import pytest

from ca.errors import BadRequest
from ca.selectors import SELECTOR_TYPES, check_selectors


def test_known_selectors_pass() -> None:
    good = {"k8s:ns:shop", "k8s:sa:web", "unix:uid:1000", "unix:path:/usr/bin/app"}
    assert check_selectors(good) == frozenset(good)


@pytest.mark.parametrize(
    "selector",
    ["k8s:namespace:shop", "unix:uid:root", "unix:path:relative", "k8s:ns:", "x" * 600],
)
def test_bad_selectors_are_refused(selector: str) -> None:
    with pytest.raises(BadRequest) as caught:
        check_selectors({selector, "k8s:sa:web"})
    assert caught.value.code == "bad_selector"
    if selector.startswith("k8s:namespace"):
        assert all(t in str(caught.value) for t in SELECTOR_TYPES)
