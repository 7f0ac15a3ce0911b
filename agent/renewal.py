"""When to renew and how long to back off: pure functions of time and a random draw.

An SVID is renewed at half its lifetime, brought forward by a random jitter of
up to ``jitter`` of its lifetime so that a node's SVIDs (and a fleet's nodes)
do not all call the CA at once. Failed calls back off exponentially with full
jitter, capped, and never past the point where the SVID would expire.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

__all__ = ["backoff_delay", "renew_at", "should_renew"]


def renew_at(
    not_before: dt.datetime, not_after: dt.datetime, draw: float, jitter: float = 0.1
) -> dt.datetime:
    """The instant to renew an SVID valid from ``not_before`` to ``not_after``.

    ``draw`` is a uniform random number in ``[0, 1)``; ``jitter`` the fraction of
    the lifetime by which renewal may be brought forward from the half-life.
    """
    if not 0.0 <= draw < 1.0:
        raise ValueError("draw must be in [0, 1)")
    if not 0.0 <= jitter < 0.5:
        raise ValueError("jitter must be in [0, 0.5)")
    lifetime = not_after - not_before
    return not_before + lifetime / 2 - lifetime * (jitter * draw)


def should_renew(now: dt.datetime, due: dt.datetime) -> bool:
    return now >= due


def backoff_delay(
    attempt: int,
    random: Callable[[], float],
    base: float = 0.5,
    cap: float = 60.0,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1 for the first retry)."""
    if attempt < 1:
        raise ValueError("attempt starts at 1")
    ceiling: float = min(cap, base * 2.0 ** min(attempt - 1, 30))
    return max(0.05, ceiling * random())
