"""FairGate (renewals first, workloads round-robin) and the per-workload token bucket."""

from __future__ import annotations

import asyncio

import pytest

from agent.fair import FairGate


async def test_priority_lane_first_then_workloads_in_turn() -> None:
    gate = FairGate(1)
    order: list[str] = []
    release = asyncio.Event()

    async def hold() -> None:
        async with gate.slot("a"):
            await release.wait()

    async def take(name: str, key: str | None) -> None:
        async with gate.slot(key):
            order.append(name)

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    tasks = [asyncio.create_task(take(f"a{i}", "a")) for i in range(3)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(take("b0", "b")))
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(take("renewal", None)))
    await asyncio.sleep(0)
    assert gate.waiting == 5
    release.set()
    await asyncio.gather(holder, *tasks)
    # The renewal jumps the queue; then "a" and "b" alternate although "a" asked first.
    assert order == ["renewal", "a0", "b0", "a1", "a2"]
    assert gate.waiting == 0


async def test_a_cancelled_waiter_gives_its_turn_away() -> None:
    gate = FairGate(1)
    async with gate.slot("a"):
        waiter = asyncio.create_task(gate._acquire("b"))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    async with asyncio.timeout(1), gate.slot("c"):  # the slot is free again
        pass
