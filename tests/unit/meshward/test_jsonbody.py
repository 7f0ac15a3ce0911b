"""Bounded JSON: the depth measured on the parsed value agrees with the bytes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshward.jsonbody import JsonTooDeep, loads_bounded, nesting_depth, value_depth

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='ab[]{}"\\', max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=12,
)


def _reference(data: bytes, max_depth: int) -> Any:
    """The definition: measure the bytes first, then parse."""
    if nesting_depth(data) > max_depth:
        raise JsonTooDeep("too deep")
    return json.loads(data)


def _outcome(func: Any, data: bytes, max_depth: int) -> Any:
    try:
        return ("value", func(data, max_depth))
    except JsonTooDeep:
        return ("too_deep", None)
    except (ValueError, RecursionError):
        return ("malformed", None)


@given(JSON)
def test_value_depth_is_the_nesting_of_the_text(value: Any) -> None:
    assert value_depth(value) == nesting_depth(json.dumps(value).encode())


@given(JSON, st.integers(min_value=0, max_value=4))
def test_loads_bounded_agrees_with_the_definition_on_json(value: Any, max_depth: int) -> None:
    data = json.dumps(value).encode()
    assert _outcome(loads_bounded, data, max_depth) == _outcome(_reference, data, max_depth)


@given(st.binary(max_size=40) | st.text(alphabet='[]{}",:\\ 1a', max_size=40).map(str.encode))
def test_loads_bounded_agrees_with_the_definition_on_junk(data: bytes) -> None:
    assert _outcome(loads_bounded, data, 2) == _outcome(_reference, data, 2)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"[" * 30_000 + b"]" * 30_000, "too_deep"),  # the parser itself would recurse too far
        (b"[" * 30_000, "too_deep"),  # and malformed as well: depth is reported first
        (b'{"a": [[1]]}', "value"),
        (b'{"a": [[[1]]]}', "too_deep"),
        (b'{"a": "[[[["}', "value"),  # brackets inside strings do not count
        (b'{"a": [', "malformed"),
    ],
)
def test_examples(data: bytes, expected: str) -> None:
    assert _outcome(loads_bounded, data, 3)[0] == expected
