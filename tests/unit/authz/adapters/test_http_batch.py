"""A decision batch shares the event loop with proxies' checks: it lets them in as it goes."""

from __future__ import annotations

import asyncio

import httpx

from authz.adapters.http import MAX_BATCH, create_app
from authz.authn.authenticator import Authenticator
from authz.engine.bundle import load_bundle
from authz.engine.decider import Decider, EngineHolder
from authz.engine.evaluation import Engine
from authz.observe.metrics import PdpMetrics
from meshward.clock import FixedClock
from tests.support.cli import REPO

ASK = {
    "principal": 'Workload::"spiffe://meshward.local/ns/shop/sa/frontend"',
    "action": 'Action::"GET"',
    "resource": 'Service::"shop"',
    "context": {"http": {"path": "/items"}},
    "explain": True,
}


async def test_a_check_is_answered_while_a_full_batch_is_decided() -> None:
    engine = Engine(load_bundle(REPO / "policies"))
    clock = FixedClock()
    decider = Decider(EngineHolder(engine, "v1"), Authenticator(clock), clock)
    app = create_app(decider, PdpMetrics(), ext_authz_destination="shop")
    finished: list[str] = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pdp") as client:

        async def batch() -> None:
            answer = await client.post("/v1/authorize", json={"requests": [ASK] * MAX_BATCH})
            assert len(answer.json()["decisions"]) == MAX_BATCH
            finished.append("batch")

        async def check() -> None:
            await asyncio.sleep(0)  # the batch has started
            answer = await client.get("/ext_authz/items")
            assert answer.status_code in (200, 401, 403)
            finished.append("check")

        await asyncio.gather(batch(), check())
    assert finished == ["check", "batch"]
