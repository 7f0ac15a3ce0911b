from __future__ import annotations

import datetime as dt

import pytest

from meshward.clock import Clock, FixedClock, SystemClock, rfc3339, utc


def test_fixed_clock_is_whole_seconds_and_moves_only_when_told() -> None:
    clock = FixedClock(dt.datetime(2026, 3, 1, 12, 0, 0, 500, tzinfo=utc))
    assert clock.now().microsecond == 0
    before = clock.now()
    clock.advance(1)
    assert clock.now() - before == dt.timedelta(seconds=1)
    assert isinstance(clock, Clock)


def test_fixed_clock_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FixedClock(dt.datetime(2026, 1, 1))


def test_system_clock_is_aware() -> None:
    assert SystemClock().now().tzinfo is not None


def test_rfc3339_is_utc_to_the_second() -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert rfc3339(dt.datetime(2026, 1, 1, 2, 0, 5, 999_000, tzinfo=plus_two)) == (
        "2026-01-01T00:00:05Z"
    )
