"""Selectors: one list of kinds, one parser."""

from __future__ import annotations

import pytest

from meshward.selectors import (
    KNOWN_SELECTORS,
    InvalidSelector,
    Selector,
    delegating_nodes,
    node_selector,
    parse_selectors,
)
from meshward.spiffe import SpiffeId


@pytest.mark.parametrize(
    "text",
    [
        "k8s:ns:prod",
        "k8s:sa:web",
        "unix:uid:1000",
        "unix:gid:0",
        "unix:supplementary_gid:27",
        "unix:path:/usr/bin/envoy",
        "agent:id:spiffe://example.org/meshward/node/n1",
    ],
)
def test_valid_round_trips(text: str) -> None:
    assert str(Selector.parse(text)) == text
    assert (Selector.parse(text).type, Selector.parse(text).name) in KNOWN_SELECTORS


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "bad_size"),
        ("k8s:ns", "not_type_name_value"),
        ("k8s:ns:", "not_type_name_value"),
        ("docker:label:x", "unknown_kind"),
        ("unix:uid:-1", "not_a_number"),
        ("unix:uid:\u0661", "not_a_number"),  # an Arabic-Indic digit one
        ("unix:path:bin/sh", "not_absolute"),
        ("k8s:ns:a b", "bad_value"),
        ("k8s:ns:a\nb", "bad_value"),
        ("agent:id:spiffe://example.org/a/../b", "bad_spiffe_id"),
        ("k8s:ns:" + "a" * 2000, "bad_size"),
    ],
)
def test_invalid(text: str, reason: str) -> None:
    with pytest.raises(InvalidSelector) as err:
        Selector.parse(text)
    assert err.value.reason == reason


def test_node_delegation() -> None:
    node = SpiffeId.parse("spiffe://example.org/meshward/node/n1")
    selectors = parse_selectors([node_selector(node), "unix:uid:1"])
    assert delegating_nodes(selectors) == frozenset({node})
    assert delegating_nodes(["agent:id:garbage", "k8s:ns:a"]) == frozenset()
