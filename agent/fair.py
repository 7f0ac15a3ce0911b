"""Sharing the agent's CA calls fairly among workloads.

:class:`FairGate` bounds how many CA calls are in flight. X.509 renewals (the
agent's own lane, ``key=None``) are always served first; workload requests
(JWT-SVIDs) wait in one queue per workload and are served round-robin, so a
workload asking for thousands of audiences waits behind itself, not in front
of another workload's rotation.

A workload over its JWT-SVID rate (:class:`meshward.ratelimit.RateLimiter`,
one bucket per workload) is refused at once instead of being queued.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator

__all__ = ["FairGate"]


class FairGate:
    """At most ``concurrency`` holders; the priority lane first, then workloads round-robin."""

    def __init__(self, concurrency: int) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._free = concurrency
        self._priority: deque[asyncio.Future[None]] = deque()
        self._lanes: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    @property
    def waiting(self) -> int:
        return len(self._priority) + sum(len(q) for q in self._lanes.values())

    @contextlib.asynccontextmanager
    async def slot(self, key: str | None = None) -> AsyncIterator[None]:
        """Hold one slot; ``key`` None is the priority lane, else the workload's lane."""
        await self._acquire(key)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, key: str | None) -> None:
        if self._free > 0 and not self.waiting:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if key is None:
            self._priority.append(waiter)
        else:
            self._lanes.setdefault(key, deque()).append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # granted just as we were cancelled: pass it on
            else:
                self._forget(key, waiter)
            raise

    def _forget(self, key: str | None, waiter: asyncio.Future[None]) -> None:
        queue = self._priority if key is None else self._lanes.get(key)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if key is not None and not queue:
                del self._lanes[key]

    def _next(self) -> asyncio.Future[None] | None:
        if self._priority:
            return self._priority.popleft()
        while self._lanes:
            key, queue = self._lanes.popitem(last=False)
            waiter = queue.popleft()
            if queue:
                self._lanes[key] = queue  # to the back: the next workload goes first
            return waiter
        return None

    def _release(self) -> None:
        while (waiter := self._next()) is not None:
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1
