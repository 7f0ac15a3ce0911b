"""Time as a dependency.

Every time-dependent piece of meshward receives a :class:`Clock`; nothing else
reads the system time. Tests use :class:`FixedClock`, which is timezone-aware,
holds whole seconds and only moves when told to.
"""

from __future__ import annotations

import datetime as _dt
import time as _time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "FixedClock", "SystemClock", "rfc3339", "utc"]

utc = _dt.UTC


def rfc3339(when: _dt.datetime) -> str:
    """``when`` in UTC to the second, as every API and CLI output writes it (``…T…Z``)."""
    return when.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@runtime_checkable
class Clock(Protocol):
    """A source of the current time."""

    def now(self) -> _dt.datetime:
        """The current wall-clock time, timezone-aware (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes backwards."""
        ...

    def timestamp(self) -> float:
        """``now()`` as seconds since the epoch, without building a datetime."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> _dt.datetime:
        return _dt.datetime.now(tz=utc)

    def monotonic(self) -> float:
        return _time.monotonic()

    def timestamp(self) -> float:
        return _time.time()


class FixedClock:
    """A clock for tests: stands still until :meth:`advance` or :meth:`set`."""

    def __init__(self, start: _dt.datetime | None = None) -> None:
        start = start or _dt.datetime(2026, 1, 1, tzinfo=utc)
        if start.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self._now = start.replace(microsecond=0)
        self._mono = 1000.0

    def now(self) -> _dt.datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def timestamp(self) -> float:
        return self._now.timestamp()

    def advance(self, seconds: float) -> None:
        self._now += _dt.timedelta(seconds=seconds)
        self._mono += seconds

    def set(self, when: _dt.datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        delta = (when - self._now).total_seconds()
        self._now = when
        self._mono += max(delta, 0.0)
