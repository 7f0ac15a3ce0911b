"""Two replicas gating one Git repository converge through a real redis-server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from authz.sources.announce import RedisAnnouncer
from authz.sources.errors import Problem, Rejected
from authz.sources.gate import Gate, Outcome
from authz.sources.git import GitSource
from meshward.clock import FixedClock
from tests.support.gitrepo import PolicyRepo
from tests.support.redis import RedisServer


def load_config(root: Path, version: str) -> dict[str, Any]:
    try:
        return dict(json.loads((root / "config.json").read_text()))
    except ValueError as exc:
        raise Rejected(
            [Problem("config.json", 1, 1, "bad-json", str(exc))], stage="bundle"
        ) from exc


@dataclass
class Replica:
    gate: Gate[dict[str, Any]]
    announcer: RedisAnnouncer
    activated: asyncio.Queue[str]


@pytest.fixture
async def replicas(
    tmp_path: Path, redis: RedisServer
) -> AsyncIterator[tuple[PolicyRepo, Replica, Replica]]:
    repo = PolicyRepo(tmp_path / "repo")
    repo.commit({"config.json": '{"n": 0}'})
    clients: list[aioredis.Redis] = []
    tasks: list[asyncio.Task[None]] = []
    out = []
    for name in ("a", "b"):
        source = GitSource(repo.url, cache_dir=tmp_path / name / "cache", poll_interval=3600)
        client = aioredis.Redis.from_url(redis.url)
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
        gate.on_activate(lambda a, q=queue: q.put_nowait(a.version))
        await gate.reload()
        assert queue.get_nowait() == gate.status().active_version
        tasks.append(asyncio.create_task(gate.run()))
        tasks.append(asyncio.create_task(announcer.listen(gate)))
        out.append(Replica(gate, announcer, queue))
    try:
        await asyncio.sleep(0.3)  # both subscribed
        yield repo, out[0], out[1]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            await client.aclose()


async def test_activation_on_one_replica_makes_the_other_fetch(
    replicas: tuple[PolicyRepo, Replica, Replica],
) -> None:
    repo, a, b = replicas
    sha = repo.commit({"config.json": '{"n": 1}'})
    a.gate.trigger()  # only A is told; B polls once an hour
    assert await asyncio.wait_for(a.activated.get(), 10) == sha
    assert await asyncio.wait_for(b.activated.get(), 10) == sha
    assert b.announcer.received >= 1


async def test_a_version_rejected_on_one_replica_is_never_activated_on_another(
    replicas: tuple[PolicyRepo, Replica, Replica],
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
