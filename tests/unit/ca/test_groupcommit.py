"""Group commit of audit rows: shared transactions, nothing answered before it is stored."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from ca.errors import StoreUnavailable
from ca.groupcommit import GroupCommit, LoopBatch, LoopCommit


class Table:
    """A write_many that takes a while (so rows queue up) and can be made to fail."""

    def __init__(self, delay: float = 0.01) -> None:
        self.rows: list[int] = []
        self.batches: list[int] = []
        self.delay = delay
        self.fail: type[Exception] | None = None
        self.poison: set[int] = set()
        self.lock = threading.Lock()

    def write_many(self, values: Sequence[int]) -> None:
        time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail("down")
        if self.poison & set(values):
            raise ValueError("this row cannot be stored")
        with self.lock:
            self.rows.extend(values)
            self.batches.append(len(values))


def _run_all(commit: GroupCommit[int], values: Sequence[int]) -> dict[int, BaseException | None]:
    """Append each value from its own thread, all at once; what each append raised."""
    start = threading.Barrier(len(values))
    outcome: dict[int, BaseException | None] = {}

    def one(value: int) -> None:
        start.wait()
        try:
            commit.append(value)
            outcome[value] = None
        except Exception as exc:
            outcome[value] = exc

    threads = [threading.Thread(target=one, args=(v,)) for v in values]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return outcome


def test_concurrent_rows_share_transactions_and_each_returns_once_stored() -> None:
    table = Table()
    commit = GroupCommit(table.write_many, max_batch=8, max_queued=16)
    seen_stored: list[bool] = []

    start = threading.Barrier(40)

    def append(value: int) -> None:
        start.wait()
        commit.append(value)
        seen_stored.append(value in table.rows)  # stored before append returned

    threads = [threading.Thread(target=append, args=(v,)) for v in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(table.rows) == list(range(40))
    assert all(seen_stored) and len(seen_stored) == 40
    assert max(table.batches) > 1 and max(table.batches) <= 8
    assert commit.flushes == len(table.batches) < 40


def test_one_writer_alone_is_written_at_once() -> None:
    table = Table(delay=0)
    commit = GroupCommit(table.write_many)
    commit.append(7)
    assert table.rows == [7] and table.batches == [1]


def test_store_unavailable_fails_every_row_of_the_batch_and_stores_nothing() -> None:
    table = Table()
    table.fail = StoreUnavailable
    outcome = _run_all(GroupCommit(table.write_many), range(12))
    assert table.rows == []
    assert all(isinstance(e, StoreUnavailable) for e in outcome.values()) and len(outcome) == 12


def test_another_failure_writes_each_row_alone_and_fails_only_the_bad_one() -> None:
    table = Table()
    table.poison = {5}
    outcome = _run_all(GroupCommit(table.write_many), range(12))
    assert sorted(table.rows) == [v for v in range(12) if v != 5]
    assert isinstance(outcome[5], ValueError)
    assert all(outcome[v] is None for v in range(12) if v != 5)


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        GroupCommit(Table().write_many, max_batch=10, max_queued=5)
    with pytest.raises(ValueError):
        GroupCommit(Table().write_many, max_batch=0)


# -- on the event loop (LoopCommit) -------------------------------------------------------


async def _store_all(commit: LoopCommit[int], groups: Sequence[Sequence[int]]) -> list[object]:
    """Each group handed in by its own coroutine, all in one step; what each store raised."""
    return await asyncio.gather(*(commit.store(g) for g in groups), return_exceptions=True)


async def test_loop_rows_of_one_step_share_one_transaction() -> None:
    table = Table(delay=0)
    commit = LoopCommit(table.write_many)
    outcome = await _store_all(commit, [[1], [2, 3], [4]])
    assert outcome == [None, None, None]
    assert sorted(table.rows) == [1, 2, 3, 4] and table.batches == [4] and commit.flushes == 1
    await commit.store([5])  # a later step: its own transaction
    assert table.batches == [4, 1]


async def test_loop_store_unavailable_fails_every_caller_of_the_batch() -> None:
    table = Table(delay=0)
    table.fail = StoreUnavailable
    commit = LoopCommit(table.write_many)
    outcome = await _store_all(commit, [[1], [2]])
    assert all(isinstance(o, StoreUnavailable) for o in outcome)
    assert table.rows == []


async def test_loop_other_failure_writes_each_callers_rows_alone() -> None:
    table = Table(delay=0)
    table.poison = {2}
    commit = LoopCommit(table.write_many)
    outcome = await _store_all(commit, [[1], [2, 3], [4]])
    assert outcome[0] is None and outcome[2] is None
    assert isinstance(outcome[1], ValueError)
    assert sorted(table.rows) == [1, 4]  # 3 shares 2's fate: one caller's rows, one transaction


async def test_loop_rows_of_a_caller_that_gave_up_are_still_written() -> None:
    table = Table(delay=0)
    commit = LoopCommit(table.write_many)
    task = asyncio.create_task(commit.store([7]))
    await asyncio.sleep(0)  # handed in
    task.cancel()
    await asyncio.sleep(0.01)
    assert table.rows == [7] and task.cancelled()


async def test_loop_batch_gives_each_caller_its_own_results() -> None:
    calls: list[list[int]] = []

    def double_all(values: Sequence[int]) -> list[int]:
        calls.append(list(values))
        return [2 * v for v in values]

    batch: LoopBatch[int, int] = LoopBatch(double_all)
    got = await asyncio.gather(batch.run([1]), batch.run([2, 3]), batch.run([4]))
    assert [list(g) for g in got] == [[2], [4, 6], [8]]
    assert calls == [[1, 2, 3, 4]]
