from __future__ import annotations

import cedarpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authz.engine import cedarsource
from authz.engine.cedarsource import (
    SourceMap,
    locate_error,
    resplit_statements,
    split_statements,
    tokenize,
)


def test_tokenize_skips_comments_and_keeps_strings_whole() -> None:
    text = 'permit // c ; "x"\n(principal == User::"a;b\\"c", action);'
    assert [t.text for t in tokenize(text)] == [
        "permit",
        "(",
        "principal",
        "==",
        "User",
        "::",
        '"a;b\\"c"',
        ",",
        "action",
        ")",
        ";",
    ]


def test_split_statements_at_top_level_semicolons() -> None:
    text = '// head\n@id("a") permit (principal, action, resource) when { "x;y" == "" };\n  forbid'
    first, second = split_statements(text)
    assert first.text.startswith('@id("a")') and first.text.endswith(";") and first.terminated
    assert second.text == "forbid" and not second.terminated
    assert text[first.start : first.end] == first.text


def test_source_map_positions() -> None:
    source = SourceMap("ab\ncd\n\nx")
    assert source.position(0) == source.position(0)
    assert (source.position(0).line, source.position(0).column) == (1, 1)
    assert (source.position(4).line, source.position(4).column) == (2, 2)
    assert (source.position(7).line, source.position(7).column) == (4, 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("permit (principal == , action, resource);", 21),
        ("permit (principal, action, resource) when { 1 + };", 48),
        ("permit (principal == 3, action, resource);", 21),
        ("permit (principal, action, resource) when { foo(1) };", 44),
        ("permitt (principal, action, resource);", 0),
        ("permit (principal, action, resource)", 36),
    ],
)
def test_locate_policy_errors(text, expected) -> None:
    with pytest.raises(ValueError) as info:
        cedarpy.policies_to_json_str(text)
    assert locate_error(text, str(info.value), cedarpy.policies_to_json_str) == expected


# Pieces that change how a text splits: statement ends, strings (closed, open,
# holding ";"), comments (holding ";" or a quote), escapes, slashes, spaces.
PIECES = [
    "permit (principal, action, resource)",
    ";",
    " ",
    "\n",
    '"',
    '";"',
    "\\",
    "/",
    "//",
    "// ;\n",
    '// "\n',
    "a",
    "\t",
]
texts = st.lists(st.sampled_from(PIECES), max_size=30).map("".join)


@settings(max_examples=400, deadline=None)
@given(texts, st.integers(min_value=0), st.integers(min_value=0), texts)
def test_resplitting_an_edited_text_equals_splitting_it(
    old: str, at: int, cut: int, insert: str
) -> None:
    start = at % (len(old) + 1)
    end = min(len(old), start + cut % 8)
    new = old[:start] + insert + old[end:]
    assert resplit_statements(old, split_statements(old), new) == split_statements(new)


def test_resplitting_works_across_the_comparison_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cedarsource, "_BLOCK", 4)
    old = "".join(f'permit (principal == U::"{i}", action, resource);\n' for i in range(40))
    for new in (
        old.replace('"7"', '"seven"'),
        old.replace('"39"', '"x"'),
        old.replace('"0"', '";"'),
        old + "forbid (principal, action, resource)",
        old[:-2],
        "// " + old,
    ):
        assert resplit_statements(old, split_statements(old), new) == split_statements(new)
