"""Policies as columns: the same policies back, made and decoded only when asked for."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from typing import Any, cast

import pytest

from authz.engine.policytable import _BLOCK, Policy, PolicyBlock, PolicyTable

POLICIES = [
    Policy("a", "x.cedar", 1, 1, "permit (principal, action, resource);", "permit", '{"a": 1}'),
    Policy("b", "x.cedar", 3, 1, "forbid (principal, action, resource);", "forbid", '{"b": [2]}'),
    Policy(
        "é", "sub/y.cedar", 1, 5, '@id("é") permit (principal, action, resource);', "permit", "{}"
    ),
]


def test_a_table_gives_back_its_policies_in_order() -> None:
    table = PolicyTable.of(POLICIES)
    assert len(table) == 3
    assert list(table) == POLICIES
    assert table[-1] == POLICIES[-1]
    assert table[0:2] == tuple(POLICIES[:2])
    assert table.ids == ("a", "b", "é")
    assert [table.effect(i) for i in range(3)] == ["permit", "forbid", "permit"]
    with pytest.raises(IndexError):
        table[3]


def test_after_a_round_trip_each_policy_is_made_from_its_row() -> None:
    table = pickle.loads(pickle.dumps(PolicyTable.of(POLICIES), protocol=pickle.HIGHEST_PROTOCOL))
    assert table == PolicyTable.of(POLICIES)
    made = [table[i] for i in range(3)]
    assert made == POLICIES
    assert [p.json_text for p in made] == [p.json_text for p in POLICIES]
    assert table[1] is made[1]  # made once


def test_the_json_form_is_decoded_on_first_use_and_kept() -> None:
    policy = Policy("a", "x.cedar", 1, 1, "t", "permit", '{"effect": "permit"}')
    assert policy._json is None
    assert policy.json == {"effect": "permit"}
    assert policy.json is policy.json
    again = pickle.loads(pickle.dumps(policy))
    assert again == policy and again._json is None
    assert json.loads(again.json_text) == policy.json


def test_released_policies_are_made_again_when_asked_for() -> None:
    table = PolicyTable.of(POLICIES)
    assert len(table.release()) == 3
    assert table.release() == []
    assert list(table) == POLICIES


def test_columns_of_different_lengths_are_refused() -> None:
    (block,) = PolicyTable.of(POLICIES).blocks
    builder, wire = cast(tuple[Callable[..., PolicyBlock], tuple[Any, ...]], block.__reduce__())
    short = list(wire)
    short[0] = short[0][:2]
    with pytest.raises(ValueError):
        builder(*short)
    assert builder(*wire) == block


def test_only_the_last_block_may_be_short() -> None:
    many = [Policy(f"p{i}", "f.cedar", i + 1, 1, "t;", "permit", "{}") for i in range(_BLOCK + 9)]
    first, last = PolicyTable.of(many).blocks
    assert PolicyTable([first, last])[_BLOCK + 8].id == f"p{_BLOCK + 8}"
    with pytest.raises(ValueError):
        PolicyTable([last, first])


def test_a_block_is_named_by_its_content() -> None:
    many = [
        Policy(f"p{i}", "f.cedar", i + 1, 1, f"t{i};", "permit", "{}") for i in range(3 * _BLOCK)
    ]
    at = _BLOCK + 5
    changed = Policy(f"p{at}", "f.cedar", at + 1, 1, "changed;", "permit", "{}")
    edited = [*many[:at], changed, *many[at + 1 :]]
    before, after = PolicyTable.of(many).blocks, PolicyTable.of(edited).blocks
    assert [b.digest for b in before] == [b.digest for b in PolicyTable.of(list(many)).blocks]
    assert [x.digest == y.digest for x, y in zip(before, after, strict=True)] == [True, False, True]
    again = pickle.loads(pickle.dumps(before[1]))
    assert again == before[1] and again.digest == before[1].digest


def test_many_policies_cross_in_blocks_and_come_back_whole() -> None:
    many = [
        Policy(
            f"p{i}", f"f{i % 3}.cedar", i + 1, 1, f"text {i};" * (i % 5), "permit", f'{{"n": {i}}}'
        )
        for i in range(600)  # more than two blocks, the last one partial
    ]
    table = pickle.loads(pickle.dumps(PolicyTable.of(many), protocol=pickle.HIGHEST_PROTOCOL))
    assert table == PolicyTable.of(many)
    assert list(table) == many
    assert [p.json for p in table] == [{"n": i} for i in range(600)]
