"""Audit rows written in shared transactions (group commit); none answered before it is stored.

Nothing is issued without its audit row (docs/ca.md), so every issuance waits
for its row. One transaction per row is one commit per issuance; here the
threads that have a row to write at the same moment share one transaction:

- a thread puts its row in a bounded FIFO queue and waits for it;
- if no flush is running, that thread flushes: it takes up to ``max_batch``
  queued rows, writes them in one transaction and wakes their threads; rows
  queued meanwhile go together in the next flush, so a batch is as large as
  the load makes it (one row when idle, no added latency) and a flush
  follows the previous one at once;
- if a flush fails, nothing of it is stored (one transaction). When the
  database is unreachable (:class:`~ca.errors.StoreUnavailable`) every
  thread of the batch gets that error (a 503, as without batching); any
  other failure and every thread writes its own row alone, as without
  batching, and gets that write's outcome. A row is stored or its caller
  fails: never silently lost.

There is no thread of its own: rows are written by the threads that wait for
them, so nothing is left to flush at shutdown.

:class:`LoopCommit` is the same for work that runs on an asyncio event loop
(:mod:`ca.api` issuing inline): coroutines hand in their rows and await
them; the rows handed in during one step of the loop are written in one
transaction just after that step, with the same outcomes (all stored; all
:class:`~ca.errors.StoreUnavailable`; or, on any other failure, each
coroutine's rows alone).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from ca.errors import StoreUnavailable

__all__ = ["GroupCommit", "LoopBatch", "LoopCommit"]

T = TypeVar("T")
R = TypeVar("R")

_QUEUED, _STORED, _FAILED, _UNAVAILABLE = range(4)


@dataclass(eq=False)
class _Row(Generic[T]):
    value: T
    state: int = _QUEUED


class GroupCommit(Generic[T]):
    """Writes values through ``write_many`` (one transaction per call), batched across threads."""

    def __init__(
        self,
        write_many: Callable[[Sequence[T]], None],
        max_batch: int = 256,
        max_queued: int = 1024,
    ) -> None:
        if max_batch < 1 or max_queued < max_batch:
            raise ValueError("need 1 <= max_batch <= max_queued")
        self._write_many = write_many
        self.max_batch = max_batch
        self.max_queued = max_queued
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[_Row[T]] = deque()
        self._flushing = False
        self.flushes = 0  # transactions written (for tests and curiosity)

    def append(self, value: T) -> None:
        """Return once ``value`` is stored; raise what storing it raised otherwise."""
        row = _Row(value)
        with self._cond:
            while len(self._queue) >= self.max_queued:
                self._cond.wait()
            self._queue.append(row)
            while row.state == _QUEUED:
                if self._flushing:
                    self._cond.wait()
                else:
                    self._flush_locked()
        if row.state == _UNAVAILABLE:
            raise StoreUnavailable("the audit row was not written: the store is unavailable")
        if row.state == _FAILED:
            self._write_many([value])  # alone: stored, or this row's own error

    def _flush_locked(self) -> None:
        """Write the oldest queued rows in one transaction (called holding ``_cond``)."""
        self._flushing = True
        batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
        self._cond.notify_all()  # room in the queue
        state = _FAILED
        self._cond.release()
        try:
            self._write_many([r.value for r in batch])
            state = _STORED
        except StoreUnavailable:
            state = _UNAVAILABLE
        except Exception:  # each row is written again alone, and fails on its own
            state = _FAILED
        finally:
            self._cond.acquire()
            for r in batch:
                r.state = state
            self.flushes += 1
            self._flushing = False
            self._cond.notify_all()


class LoopBatch(Generic[T, R]):
    """Runs values through ``run_many`` (one transaction per call), batched over one loop step.

    ``run_many`` gets the values of every caller of the step in one list and
    returns one result per value, in order; it runs on the loop, so it is for
    a store whose calls take microseconds. Audit rows use it as
    :class:`LoopCommit`; the CA's shared rate buckets too
    (:class:`ca.replicas.LoopRates`).
    """

    def __init__(self, run_many: Callable[[Sequence[T]], Sequence[R]]) -> None:
        self._run_many = run_many
        self._pending: list[tuple[Sequence[T], asyncio.Future[Sequence[R]]]] = []
        self.flushes = 0  # transactions run (for tests and curiosity)

    async def run(self, values: Sequence[T]) -> Sequence[R]:
        """The results for ``values`` once run; raise what running them raised otherwise."""
        if not values:
            return []
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Sequence[R]] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush, context=contextvars.Context())
        # A caller that gives up cancels only its wait: its values stay pending and are run.
        self._pending.append((values, done))
        return await done

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        self.flushes += 1
        try:
            results = self._run_many([v for values, _ in batch for v in values])
        except StoreUnavailable:
            for _, done in batch:
                _settle(done, StoreUnavailable("the CA database is unavailable"))
        except Exception:  # each caller's values again alone: run, or their own error
            for values, done in batch:
                try:
                    _settle(done, self._run_many(values))
                except Exception as exc:
                    _settle(done, exc)
        else:
            at = 0
            for values, done in batch:
                _settle(done, results[at : at + len(values)])
                at += len(values)


class LoopCommit(Generic[T]):
    """Writes values through ``write_many`` (one transaction per call), batched over one step
    of the running event loop."""

    def __init__(self, write_many: Callable[[Sequence[T]], None]) -> None:
        self._write_many = write_many
        self._batch: LoopBatch[T, None] = LoopBatch(self._written)

    def _written(self, values: Sequence[T]) -> list[None]:
        self._write_many(values)
        return [None] * len(values)

    @property
    def flushes(self) -> int:
        return self._batch.flushes

    async def store(self, values: Sequence[T]) -> None:
        """Return once ``values`` are stored; raise what storing them raised otherwise."""
        await self._batch.run(values)


def _settle(done: asyncio.Future[Sequence[R]], outcome: Sequence[R] | BaseException) -> None:
    if done.done():
        return
    if isinstance(outcome, BaseException):
        done.set_exception(outcome)
    else:
        done.set_result(outcome)
