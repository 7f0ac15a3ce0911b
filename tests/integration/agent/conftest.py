"""A running node agent (renewal loop + Workload API) over an in-process authority."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from grpclib.server import Server

from agent.hub import SnapshotHub
from agent.model import Entry
from agent.node import AgentConfig, NodeAgent
from agent.workload_api import WorkloadApi, serve_workload_api
from meshward.clock import SystemClock
from meshward.spiffe import SpiffeId
from tests.support.authority import LocalAuthority


@dataclass
class RunningAgent:
    authority: LocalAuthority
    agent: NodeAgent
    socket: Path
    server: Server
    api: WorkloadApi

    @property
    def endpoint(self) -> str:
        return f"unix:{self.socket}"


def entry(entry_id: str, spiffe_id: str, *selectors: str, ttl: int | None = None) -> Entry:
    return Entry(entry_id, SpiffeId.parse(spiffe_id), frozenset(selectors), ttl)


@pytest.fixture
def short_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Unix socket paths are limited to ~107 bytes; keep them short.
    return tmp_path_factory.mktemp("ag")


@pytest.fixture
async def running_agent(short_tmp: Path) -> AsyncIterator[RunningAgent]:
    clock = SystemClock()
    authority = LocalAuthority(clock)
    authority.entries = [
        entry("web", "spiffe://example.org/web", "unix:uid:0"),
        entry("db", "spiffe://example.org/db", "unix:uid:4242"),
    ]
    agent = NodeAgent(
        authority, SnapshotHub(), clock, random.Random(7), AgentConfig(backoff_base=0.05)
    )
    socket = short_tmp / "api.sock"
    api = WorkloadApi(agent)
    server = await serve_workload_api(api, socket)
    async with agent:
        await agent.wait_synced()
        yield RunningAgent(authority, agent, socket, server, api)
    server.close()
    await server.wait_closed()
