from __future__ import annotations

import datetime as dt

from console.svg import Bar, Span, sparkline, split_bar, timeline

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_sparkline_scales_to_the_box_and_escapes_its_title() -> None:
    out = sparkline([0.0, 5.0, 10.0], width=100, height=50, title="<b>rate</b>")
    assert "<title>&lt;b&gt;rate&lt;/b&gt;</title>" in out
    assert 'points="0,48 50,25 100,2"' in out


def test_sparkline_of_nothing_is_a_flat_line() -> None:
    assert 'points="0,48"' in sparkline([], width=100, height=50, title="t")


def test_split_bar_is_proportional_and_labelled() -> None:
    out = split_bar([Bar("allow", 3, "allow"), Bar("deny", 1, "deny")], width=200, title="t")
    assert 'width="150"' in out and 'x="150" y="0" width="50"' in out
    assert "allow: 3 (75%)" in out


def test_split_bar_with_no_data_draws_an_empty_bar() -> None:
    assert 'class="empty"' in split_bar([Bar("allow", 0, "allow")], title="t")


def test_timeline_places_spans_and_now_on_one_axis() -> None:
    spans = [
        Span("<root>", T0, T0 + dt.timedelta(days=10), "root"),
        Span("signing", T0 + dt.timedelta(days=5), T0 + dt.timedelta(days=10), "signing"),
    ]
    out = timeline(spans, T0 + dt.timedelta(days=5), width=640, title="validity")
    assert "&lt;root&gt;" in out and "<root>" not in out
    # now is half-way along the axis: label width 200 + half of 430
    assert 'x1="415"' in out
