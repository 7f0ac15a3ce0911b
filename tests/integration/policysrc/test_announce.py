"""Two replicas gating one Git repository converge through a real redis-server."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from authz.cache.redis import RedisClient, RedisOptions, open_redis
from authz.sources.announce import RedisAnnouncer
from authz.sources.gate import Activation, Gate, Outcome, Rejection
from authz.sources.git import GitSource
from meshward.clock import FixedClock
from tests.support.gitrepo import PolicyRepo
from tests.support.policyfiles import load_config
from tests.support.redis import RedisServer
from tests.support.wait import eventually_async


@dataclass
class Replica:
    gate: Gate[dict[str, Any]]
    announcer: RedisAnnouncer
    activated: asyncio.Queue[str]


Replicas = tuple[PolicyRepo, Replica, Replica]


@pytest.fixture
async def replicas(tmp_path: Path, redis: RedisServer) -> AsyncIterator[Replicas]:
    """Two replicas reloaded only by the test: nothing else reloads a gate, so
    each ``reload()``'s outcome is the test's to assert."""
    async with _replicas(tmp_path, redis, running=False) as out:
        yield out


@pytest.fixture
async def running_replicas(tmp_path: Path, redis: RedisServer) -> AsyncIterator[Replicas]:
    """Two replicas whose gates also reload by themselves (``Gate.run``), as in a PDP."""
    async with _replicas(tmp_path, redis, running=True) as out:
        yield out


@asynccontextmanager
async def _replicas(
    tmp_path: Path, redis: RedisServer, *, running: bool
) -> AsyncIterator[Replicas]:
    repo = PolicyRepo(tmp_path / "repo")
    repo.commit({"config.json": '{"n": 0}'})
    clients: list[RedisClient] = []
    tasks: list[asyncio.Task[None]] = []
    out = []
    for name in ("a", "b"):
        source = GitSource(repo.url, cache_dir=tmp_path / name / "cache", poll_interval=3600)
        # The client the PDP builds for its announcer: no retries, blocking reads.
        client = open_redis(RedisOptions(redis.url), blocking_reads=True)
        clients.append(client)
        announcer = RedisAnnouncer(client, source.description, replica_id=name)
        gate = Gate(
            source,
            load_config,
            clock=FixedClock(),
            work_dir=tmp_path / name / "work",
            veto=announcer.is_rejected,
        )
        announcer.attach(gate)
        queue: asyncio.Queue[str] = asyncio.Queue()

        def activated(a: Activation[Any], q: asyncio.Queue[str] = queue) -> None:
            q.put_nowait(a.version)

        gate.on_activate(activated)
        await gate.reload()
        assert queue.get_nowait() == gate.status().active_version
        if running:
            tasks.append(asyncio.create_task(gate.run()))
        tasks.append(asyncio.create_task(announcer.listen(gate)))
        out.append(Replica(gate, announcer, queue))
    try:
        channel = out[0].announcer.channel

        async def both_subscribed() -> bool:
            counts = await clients[0].pubsub_numsub(channel)
            return bool(counts) and int(counts[0][1]) >= 2

        await eventually_async(both_subscribed, 30, message="both replicas subscribed")
        yield repo, out[0], out[1]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            await client.aclose()


async def test_activation_on_one_replica_makes_the_other_fetch(
    running_replicas: Replicas,
) -> None:
    repo, a, b = running_replicas
    sha = repo.commit({"config.json": '{"n": 1}'})
    a.gate.trigger()  # only A is told; B polls once an hour
    assert await asyncio.wait_for(a.activated.get(), 30) == sha
    assert await asyncio.wait_for(b.activated.get(), 30) == sha
    assert b.announcer.received >= 1


async def test_a_version_rejected_on_one_replica_is_never_activated_on_another(
    replicas: Replicas,
) -> None:
    repo, a, b = replicas
    good = b.gate.status().active_version
    bad = repo.commit({"config.json": "{not json"})
    assert await a.gate.reload() is Outcome.REJECTED
    assert await a.announcer.is_rejected(bad)
    # B's own gate is never consulted: the version is refused before it is loaded
    assert await b.gate.reload() is Outcome.VETOED
    status = b.gate.status()
    assert status.active_version == good
    assert status.last_rejected is not None and status.last_rejected.vetoed
    assert status.last_rejected.version == bad


async def test_a_redis_restart_never_vetoes_the_next_good_version(
    replicas: Replicas, redis: RedisServer
) -> None:
    repo, a, b = replicas
    redis.restart()  # every open connection is now dead
    sha = repo.commit({"config.json": '{"n": 2}'})
    # The veto lookup after the restart finds its pooled connection dead, asks
    # again on a fresh one and finds no veto: the version is gated on its own
    # merits, not recorded as "rejected by another replica".
    assert await b.gate.reload() is Outcome.ACTIVATED
    assert b.gate.status().active_version == sha
    assert b.gate.status().last_rejected is None
    assert await a.gate.reload() is Outcome.ACTIVATED

    # Redis answers again: rejections are shared as before.
    bad = repo.commit({"config.json": "{not json"})
    assert await a.gate.reload() is Outcome.REJECTED
    assert await a.announcer.is_rejected(bad)
    assert await b.gate.reload() is Outcome.VETOED
    assert b.gate.status().latest_state == "vetoed"


async def test_while_redis_is_down_each_replica_still_judges_for_itself(
    replicas: Replicas, redis: RedisServer
) -> None:
    repo, _, b = replicas
    redis.kill()
    bad = repo.commit({"config.json": "{not json"})
    assert await b.gate.reload() is Outcome.REJECTED  # its own gate, not a veto
    good = repo.commit({"config.json": '{"n": 3}'})
    assert await b.gate.reload() is Outcome.ACTIVATED
    redis.start()
    assert await b.gate.reload() is Outcome.UNCHANGED
    status = b.gate.status()
    assert (status.active_version, status.latest_version, status.latest_state) == (
        good,
        good,
        "active",
    )
    assert status.last_rejected is not None and status.last_rejected.version == bad


async def test_a_rejection_announced_on_a_connection_redis_dropped_is_not_lost(
    redis: RedisServer,
) -> None:
    client = open_redis(RedisOptions(redis.url), blocking_reads=True)
    announcer = RedisAnnouncer(client, "a source")
    try:
        assert not await announcer.is_rejected("v0")  # a connection is now pooled
        redis.restart()  # ... and dead: its first use fails
        at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        await announcer.announce_rejection(Rejection("v1", at, "bundle", ()))
    finally:
        await client.aclose()
    reader = aioredis.Redis.from_url(redis.url)
    try:
        assert await reader.sismember(announcer.rejected_key, "v1")
    finally:
        await reader.aclose()
