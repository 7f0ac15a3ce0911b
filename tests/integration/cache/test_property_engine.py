"""Property, through the real engine: the cache's seam (``get_or_evaluate(request, engine)``,
with the engine's scope slicing choosing the candidate policies) serves what
``engine.evaluate`` answers afresh, from either tier, across a version change.

Policies and requests come from the generators of ``test_property``; policy sets
the schema rejects are skipped (the gate would never activate them).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from authz.cache.redis import RedisOptions, RedisTier
from authz.cache.tiered import TieredCache
from authz.engine.bundle import load_bundle
from authz.engine.evaluation import Engine
from authz.errors import AuthzError
from meshward.clock import FixedClock
from tests.integration.cache.test_property import START, build, scenario
from tests.support.redis import RedisServer

SCHEMA = """
entity Group in [Group];
entity Workload in [Group] { team?: String };
entity Service;
action "GET", "POST" appliesTo {
  principal: [Workload], resource: [Service],
  context: { http: { path: String, headers: { "x-user": String, "x-request-id": String } },
             peer: { spiffe_id: String }, flag: Bool, n: Long, tags: Set<String> }
};
"""


def engine_for(policies: str) -> Engine | None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "schema.cedarschema").write_text(SCHEMA)
        (root / "policies.cedar").write_text(policies)
        try:
            return Engine(load_bundle(root))
        except AuthzError:
            return None


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=scenario(), extra=st.lists(st.integers(0, 11), max_size=12))
def test_engine_seam_serves_fresh_decisions(
    redis: RedisServer, case: tuple[str, str, list[dict[str, Any]]], extra: list[int]
) -> None:
    first, second, specs = case
    engines = [engine_for(first), engine_for(second)]
    assume(engines[0] is not None and engines[1] is not None)
    order = [*range(len(specs)), *range(len(specs)), *extra]
    asyncio.run(_run(redis.url, [e for e in engines if e is not None], specs, order))


async def _run(url: str, engines: list[Engine], specs: list[Any], order: list[int]) -> None:
    clock = FixedClock(START)
    caches = [
        TieredCache(clock, redis=RedisTier.connect(RedisOptions(url, timeout=0.5))),
        TieredCache(
            clock, redis=RedisTier.connect(RedisOptions(url, timeout=0.5)), local_max_entries=0
        ),
    ]
    try:
        for step, index in enumerate(order):
            if step == len(specs):  # the second version is activated
                for c in caches:
                    c.on_activation(engines[1].version)
            engine = engines[0] if step < len(specs) else engines[1]
            request = build(specs[index % len(specs)], step)
            decision, tier = await caches[step % 2].get_or_evaluate(request, engine)
            assert decision == engine.evaluate(request), (step, tier)
            for c in caches:
                while c._pending:
                    await asyncio.sleep(0.001)
    finally:
        for c in caches:
            await c.aclose()
