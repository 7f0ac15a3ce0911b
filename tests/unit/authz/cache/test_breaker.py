"""The circuit breaker's state machine, step by step."""

from __future__ import annotations

import pytest

from authz.cache.breaker import Breaker, BreakerState

# (action, time, expected result of allow() or None, state after)
SCRIPT = [
    ("allow", 0.0, True, "closed"),
    ("failure", 0.0, None, "closed"),
    ("failure", 0.1, None, "closed"),
    ("success", 0.2, None, "closed"),  # resets the count
    ("failure", 0.3, None, "closed"),
    ("failure", 0.4, None, "closed"),
    ("failure", 0.5, None, "open"),
    ("allow", 0.6, False, "open"),
    ("allow", 1.49, False, "open"),
    ("allow", 1.5, True, "half_open"),  # the probe
    ("allow", 1.5, False, "half_open"),  # only one probe at a time
    ("failure", 1.6, None, "open"),
    ("allow", 2.0, False, "open"),
    ("allow", 2.6, True, "half_open"),
    ("success", 2.7, None, "closed"),
    ("allow", 2.8, True, "closed"),
]


def test_script() -> None:
    changes: list[BreakerState] = []
    breaker = Breaker(failure_threshold=3, reset_after=1.0, on_change=changes.append)
    for step, (action, now, expected, state) in enumerate(SCRIPT):
        if action == "allow":
            assert breaker.allow(now) is expected, step
        elif action == "failure":
            breaker.failure(now)
        else:
            breaker.success()
        assert breaker.state.value == state, step
    assert changes == ["open", "half_open", "open", "half_open", "closed"]


@pytest.mark.parametrize(("threshold", "reset"), [(0, 1.0), (1, 0.0)])
def test_bad_parameters(threshold: int, reset: float) -> None:
    with pytest.raises(ValueError):
        Breaker(threshold, reset)
