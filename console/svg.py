"""Small SVG charts drawn on the server (pure: values in, markup out).

Every text that reaches the markup goes through :func:`html.escape`; numbers
are formatted by this module, never taken as text from a caller.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["Bar", "Span", "split_bar", "sparkline", "timeline"]


@dataclass(frozen=True, slots=True)
class Bar:
    """One part of a split bar: a label, its count and a CSS class for its colour."""

    label: str
    value: float
    css: str


@dataclass(frozen=True, slots=True)
class Span:
    """One row of a timeline: a label and the interval it covers."""

    label: str
    start: dt.datetime
    end: dt.datetime
    css: str = "span"


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def sparkline(values: Sequence[float], *, width: int = 240, height: int = 48, title: str) -> str:
    """A line of ``values`` (oldest first) scaled to the box; empty input draws a flat line."""
    points = list(values) or [0.0]
    top = max(*points, 1e-9)
    step = width / max(len(points) - 1, 1)
    coords = " ".join(
        f"{_num(i * step)},{_num(height - 2 - (v / top) * (height - 4))}"
        for i, v in enumerate(points)
    )
    return (
        f'<svg class="chart spark" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}"><title>{escape(title)}</title>'
        f'<polyline fill="none" points="{coords}"/></svg>'
    )


def split_bar(parts: Sequence[Bar], *, width: int = 240, height: int = 18, title: str) -> str:
    """One horizontal bar split by ``parts`` in proportion to their values."""
    total = sum(max(p.value, 0.0) for p in parts)
    rects: list[str] = []
    x = 0.0
    for part in parts:
        share = (max(part.value, 0.0) / total) if total else 0.0
        w = share * width
        label = f"{part.label}: {_num(part.value)} ({share:.0%})"
        rects.append(
            f'<rect class="{escape(part.css)}" x="{_num(x)}" y="0" width="{_num(w)}" '
            f'height="{height}"><title>{escape(label)}</title></rect>'
        )
        x += w
    if not total:
        rects.append(f'<rect class="empty" x="0" y="0" width="{width}" height="{height}"/>')
    return (
        f'<svg class="chart bar" role="img" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}"><title>{escape(title)}</title>{"".join(rects)}</svg>'
    )


def timeline(
    spans: Sequence[Span],
    now: dt.datetime,
    *,
    width: int = 640,
    row: int = 22,
    horizon: dt.timedelta = dt.timedelta(days=30),
    title: str,
) -> str:
    """Validity intervals on one time axis, with a line at ``now``.

    The axis ends ``horizon`` after ``now`` (a ten-year root would otherwise
    squeeze a week-long signing CA to a pixel); a span reaching past it is cut
    at the edge and its tooltip keeps the real end.
    """
    label_w = 200
    if not spans:
        return (
            '<svg class="chart timeline" role="img" width="0" height="0">'
            f"<title>{escape(title)}</title></svg>"
        )
    lo = min(*(s.start for s in spans), now)
    hi = min(max(*(s.end for s in spans), now), now + horizon)
    scale = (width - label_w - 10) / max((hi - lo).total_seconds(), 1.0)

    def x(t: dt.datetime) -> float:
        return label_w + (t - lo).total_seconds() * scale

    rows = []
    for i, span in enumerate(spans):
        y = i * row + 4
        text = f"{span.label}: {span.start.isoformat()} to {span.end.isoformat()}"
        rows.append(
            f'<text x="0" y="{y + 13}">{escape(span.label[:32])}</text>'
            f'<rect class="{escape(span.css)}" x="{_num(x(span.start))}" y="{y}" '
            f'width="{_num(max(x(min(span.end, hi)) - x(span.start), 1.0))}" height="{row - 8}">'
            f"<title>{escape(text)}</title></rect>"
        )
    height = len(spans) * row + 8
    now_x = _num(x(now))
    return (
        f'<svg class="chart timeline" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}"><title>{escape(title)}</title>{"".join(rows)}'
        f'<line class="now" x1="{now_x}" x2="{now_x}" y1="0" y2="{height}"/></svg>'
    )
