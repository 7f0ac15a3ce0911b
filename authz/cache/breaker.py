"""A circuit breaker for the shared tier (pure state machine, time passed in).

``closed``: calls go through; ``failure_threshold`` consecutive failures open
it. ``open``: calls are refused (the caller goes on without Redis) until
``reset_after`` seconds have passed. ``half_open``: one probe call at a time is
let through; its success closes the breaker, its failure opens it again.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

__all__ = ["Breaker", "BreakerState"]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Breaker:
    """Opens on errors, half-opens to probe; ``now`` is a monotonic reading."""

    def __init__(
        self,
        failure_threshold: int = 3,
        reset_after: float = 1.0,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if reset_after <= 0:
            raise ValueError("reset_after must be > 0")
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self.on_change = on_change
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        return self._state

    def allow(self, now: float) -> bool:
        """May a call go to Redis now? In ``half_open`` only one probe at a time."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            if now - self._opened_at < self.reset_after:
                return False
            self._set(BreakerState.HALF_OPEN)
        if self._probing:
            return False
        self._probing = True
        return True

    def success(self) -> None:
        self._failures = 0
        self._probing = False
        if self._state is not BreakerState.CLOSED:
            self._set(BreakerState.CLOSED)

    def failure(self, now: float) -> None:
        self._probing = False
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._opened_at = now
            self._failures = 0
            self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        if state is not self._state:
            self._state = state
            if self.on_change is not None:
                self.on_change(state)
