from __future__ import annotations

import datetime as dt

import pytest

from agent.renewal import backoff_delay, renew_at, should_renew

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


@pytest.mark.parametrize(
    ("draw", "jitter", "expected_offset"),
    [
        (0.0, 0.1, 1800),  # exactly half-life without jitter
        (0.5, 0.1, 1800 - 180),
        (0.999, 0.0, 1800),
        (0.5, 0.2, 1800 - 360),
    ],
)
def test_renew_at_half_life_minus_jitter(draw: float, jitter: float, expected_offset: int) -> None:
    due = renew_at(T0, T0 + HOUR, draw, jitter)
    assert due == T0 + dt.timedelta(seconds=expected_offset)


def test_renewal_due_one_second_either_side() -> None:
    due = renew_at(T0, T0 + HOUR, 0.0)
    assert not should_renew(due - dt.timedelta(seconds=1), due)
    assert should_renew(due, due)
    assert should_renew(due + dt.timedelta(seconds=1), due)


def test_jitter_never_before_forty_percent_of_life() -> None:
    for i in range(100):
        due = renew_at(T0, T0 + HOUR, i / 100, 0.1)
        assert T0 + 0.4 * HOUR <= due <= T0 + 0.5 * HOUR


@pytest.mark.parametrize(("draw", "jitter"), [(1.0, 0.1), (-0.1, 0.1), (0.5, 0.5), (0.5, -0.1)])
def test_renew_at_rejects_bad_parameters(draw: float, jitter: float) -> None:
    with pytest.raises(ValueError):
        renew_at(T0, T0 + HOUR, draw, jitter)


def test_backoff_grows_and_is_capped() -> None:
    top = [backoff_delay(n, lambda: 0.999, base=0.5, cap=30) for n in range(1, 12)]
    assert top[0] < 0.5 and top[1] < 1.0 and top[2] < 2.0
    assert top == sorted(top)
    assert max(top) <= 30
    assert backoff_delay(50, lambda: 0.999, base=0.5, cap=30) == pytest.approx(29.97)
    # Full jitter, but never a busy loop.
    assert backoff_delay(3, lambda: 0.0) == 0.05


def test_backoff_attempt_starts_at_one() -> None:
    with pytest.raises(ValueError):
        backoff_delay(0, lambda: 0.5)
