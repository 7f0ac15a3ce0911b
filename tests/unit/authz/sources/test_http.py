"""The policy endpoints: status document and the HMAC-signed refresh webhook."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from authz.adapters.activepolicies import policies_router, sign
from authz.sources.gate import Gate
from authz.sources.git import GitSource
from meshward.clock import FixedClock
from tests.support.gitrepo import PolicyRepo, git
from tests.support.policyfiles import load_config

SECRET = b"webhook-secret-for-tests"


class Setup:
    def __init__(self, repo: PolicyRepo, gate: Gate[dict[str, Any]], client: httpx.AsyncClient):
        self.repo, self.gate, self.client = repo, gate, client
        self.activated = asyncio.Event()
        gate.on_activate(lambda a: self.activated.set())


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    repo = PolicyRepo(tmp_path / "repo")
    repo.commit({"config.json": '{"n": 1}'})
    source = GitSource(repo.url, cache_dir=tmp_path / "cache", poll_interval=3600)
    gate = Gate(source, load_config, clock=FixedClock(), work_dir=tmp_path / "work")
    app = FastAPI()
    app.include_router(policies_router(gate, webhook_secret=SECRET))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pdp") as client:
        s = Setup(repo, gate, client)
        task = asyncio.create_task(gate.run())
        await asyncio.wait_for(s.activated.wait(), 10)
        s.activated.clear()
        try:
            yield s
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_status_document(setup: Setup) -> None:
    body = (await setup.client.get("/v1/policies")).json()
    assert body["active_version"] == setup.gate.status().active_version
    assert body["activated_at"] == "2026-01-01T00:00:00Z"
    assert body["last_rejected"] is None
    assert body["last_fetch_error"] is None
    assert body["source"].startswith("git file://")
    assert body["shadow"] is None


async def test_the_status_names_the_branch_tip_even_after_a_force_push_back(
    setup: Setup,
) -> None:
    bad = setup.repo.commit({"config.json": "{not json"})
    await setup.gate.reload()
    good = setup.repo.commit({"config.json": '{"n": 3}'})
    await setup.gate.reload()
    git("push", "--quiet", "--force", "origin", f"{bad}:refs/heads/main", cwd=setup.repo.work)
    await setup.gate.reload()
    body = (await setup.client.get("/v1/policies")).json()
    assert body["active_version"] == good  # the last good version keeps serving
    assert (body["latest_version"], body["latest_state"]) == (bad, "rejected")


async def test_signed_webhook_triggers_a_fetch(setup: Setup) -> None:
    sha = setup.repo.commit({"config.json": '{"n": 2}'})
    payload = json.dumps({"ref": "refs/heads/main", "after": sha}).encode()
    response = await setup.client.post(
        "/v1/policies/refresh",
        content=payload,
        headers={"X-Meshward-Signature": sign(SECRET, payload)},
    )
    assert response.status_code == 202
    await asyncio.wait_for(setup.activated.wait(), 10)
    assert (await setup.client.get("/v1/policies")).json()["active_version"] == sha


async def test_github_signature_header_is_accepted(setup: Setup) -> None:
    sha = setup.repo.commit({"config.json": '{"n": 3}'})
    response = await setup.client.post(
        "/v1/policies/refresh", content=b"{}", headers={"X-Hub-Signature-256": sign(SECRET, b"{}")}
    )
    assert response.status_code == 202
    await asyncio.wait_for(setup.activated.wait(), 10)
    assert setup.gate.status().active_version == sha


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Meshward-Signature": "sha256=" + "0" * 64},
        {"X-Meshward-Signature": sign(b"another secret", b"{}")},
        {"X-Meshward-Signature": sign(SECRET, b"{}").upper()},
        {"X-Meshward-Signature": "garbage"},
    ],
)
async def test_bad_or_missing_signature_is_401_and_does_nothing(
    setup: Setup, headers: dict[str, str]
) -> None:
    before = setup.gate.status()
    setup.repo.commit({"config.json": '{"n": 4}'})
    response = await setup.client.post("/v1/policies/refresh", content=b"{}", headers=headers)
    assert response.status_code == 401
    assert "www-authenticate" in response.headers
    await asyncio.sleep(0.5)  # a wrongly scheduled fetch would run in this time
    after = setup.gate.status()
    assert after.active_version == before.active_version
    assert after.reloads == before.reloads


async def test_signature_over_a_different_body_is_rejected(setup: Setup) -> None:
    response = await setup.client.post(
        "/v1/policies/refresh",
        content=b'{"after": "evil"}',
        headers={"X-Meshward-Signature": sign(SECRET, b'{"after": "good"}')},
    )
    assert response.status_code == 401
