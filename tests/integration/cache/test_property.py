"""Property: a decision served from either tier equals a fresh evaluation.

Hypothesis generates Cedar policy sets over a handful of context attributes
and request sequences whose attributes come from small domains (so keys
repeat and the tiers are really used), with a unique ``x-request-id`` per
request and, half-way, a switch to a second policy version. Two replicas share
one real Redis: one with the in-process tier, one without, so answers come
from the local tier, from Redis and from evaluation.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from functools import partial
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.cache.redis import RedisOptions, RedisTier
from authz.cache.tiered import Tier, TieredCache
from authz.engine.model import AccessRequest, EntityUid, Identity
from meshward.clock import FixedClock
from tests.integration.cache.conftest import Oracle
from tests.support.redis import RedisServer

ATOMS = [
    'context.http.path == "/a"',
    'context.http.path like "/v1/*"',
    'context.http.headers["x-user"] == "bob"',
    'context.http.headers has "x-user"',
    "context has peer",
    'context.peer.spiffe_id == "spiffe://td/w1"',
    "context.flag",
    "context.n == 1",
    "context.n > 1",
    'context.http.headers == {"x-user": "bob"}',
    "context == {}",
    'principal in Group::"g1"',
    '(principal has team && principal.team == "red")',
    'context.tags.contains("t1")',
]

conditions = st.recursive(
    st.sampled_from(ATOMS),
    lambda inner: st.one_of(
        inner.map(lambda c: f"!({c})"),
        st.tuples(inner, st.sampled_from(["&&", "||"]), inner).map(
            lambda t: f"({t[0]}) {t[1]} ({t[2]})"
        ),
        st.tuples(inner, inner, inner).map(lambda t: f"(if {t[0]} then {t[1]} else {t[2]})"),
    ),
    max_leaves=3,
)


@st.composite
def policy(draw: st.DrawFn) -> str:
    effect = draw(st.sampled_from(["permit", "permit", "forbid"]))
    principal = draw(
        st.sampled_from(["principal", 'principal == Workload::"w1"', 'principal in Group::"g2"'])
    )
    action = draw(st.sampled_from(["action", 'action == Action::"GET"']))
    resource = draw(st.sampled_from(["resource", 'resource == Service::"api"']))
    body = ""
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["when", "unless"]))
        body += f" {kind} {{ {draw(conditions)} }}"
    return f"{effect}({principal}, {action}, {resource}){body};"


policy_sets = st.lists(policy(), min_size=1, max_size=3).map("\n".join)

# Each request field and its domain; None is "absent".
FIELDS: dict[str, list[Any]] = {
    "principal": ["w1", "w2", "w3"],
    "parents": [(), ("g1",), ("g2",), ("g1", "g2")],
    "team": [None, "red", "blue"],
    "action": ["GET", "POST"],
    "resource": ["api", "db"],
    "path": ["/a", "/b", "/v1/x"],
    "user": [None, "bob", "eve"],
    "peer": [None, "spiffe://td/w1", "spiffe://td/w2"],
    "flag": [None, True, False, "yes"],
    "n": [None, 0, 1, 2, "1"],
    "tags": [None, ["t1"], ["t2"], []],
}

spec = st.fixed_dictionaries({name: st.sampled_from(values) for name, values in FIELDS.items()})


# Which fields a policy text can depend on, by what it mentions.
MENTIONS = {
    "principal": ['Workload::"'],
    "parents": ['Group::"'],
    "team": ["principal.team"],
    "action": ['Action::"'],
    "resource": ['Service::"'],
    "path": ["context.http.path", "context == {}"],
    "user": ["x-user", "context == {}"],
    "peer": ["peer", "context == {}"],
    "flag": ["context.flag", "context == {}"],
    "n": ["context.n", "context == {}"],
    "tags": ["context.tags", "context == {}"],
}


@st.composite
def request_specs(draw: st.DrawFn, policies: str) -> list[dict[str, Any]]:
    """A first request, then each next one is an earlier one with one field changed,
    mostly a field the policies read (the change that could expose a wrong hit)."""
    read = sorted(f for f, marks in MENTIONS.items() if any(m in policies for m in marks))
    specs = [draw(spec)]
    for _ in range(draw(st.integers(1, 11))):
        base = dict(draw(st.sampled_from(specs)))
        pool = read if read and draw(st.integers(0, 3)) != 0 else sorted(FIELDS)
        name = draw(st.sampled_from(pool))
        base[name] = draw(st.sampled_from(FIELDS[name]))
        specs.append(base)
    return specs


@st.composite
def scenario(draw: st.DrawFn) -> tuple[str, str, list[dict[str, Any]]]:
    first, second = draw(policy_sets), draw(policy_sets)
    return first, second, draw(request_specs(first + second))


_versions = itertools.count()
START = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


def build(spec: dict[str, Any], rid: int) -> AccessRequest:
    headers = {"x-request-id": str(rid)}
    if spec["user"] is not None:
        headers["x-user"] = spec["user"]
    context: dict[str, Any] = {"http": {"path": spec["path"], "headers": headers}}
    if spec["peer"] is not None:
        context["peer"] = {"spiffe_id": spec["peer"]}
    for name in ("flag", "n", "tags"):
        if spec[name] is not None:
            context[name] = spec[name]
    ident = Identity(
        EntityUid("Workload", spec["principal"]),
        tuple(EntityUid("Group", p) for p in spec["parents"]),
        {} if spec["team"] is None else {"team": spec["team"]},
        expires_at=dt.datetime(2026, 3, 1, 13, tzinfo=dt.UTC),
    )
    return AccessRequest(
        ident, EntityUid("Action", spec["action"]), EntityUid("Service", spec["resource"]), context
    )


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=scenario(), extra=st.lists(st.integers(0, 11), max_size=12))
def test_served_equals_fresh(
    redis: RedisServer, case: tuple[str, str, list[dict[str, Any]]], extra: list[int]
) -> None:
    first, second, specs = case
    # Each request right after the one it was derived from, under each version,
    # then some more in any order.
    order = [*range(len(specs)), *range(len(specs)), *extra]
    asyncio.run(_run(redis.url, first, second, specs, order))


async def _run(url: str, first: str, second: str, specs: list[Any], order: list[int]) -> None:
    clock = FixedClock(START)
    n = next(_versions)
    # Version ids are unique per example: the Redis is shared by every example.
    versions = [Oracle(f"v{n}a", first), Oracle(f"v{n}b", second)]
    caches = [
        TieredCache(clock, redis=RedisTier.connect(RedisOptions(url, timeout=0.5))),
        TieredCache(
            clock, redis=RedisTier.connect(RedisOptions(url, timeout=0.5)), local_max_entries=0
        ),
    ]
    seen: set[Tier] = set()
    try:
        for step, index in enumerate(order):
            oracle = versions[0] if step < len(specs) else versions[1]
            request = build(specs[index % len(specs)], step)
            cache = caches[step % 2]
            served = await cache.serve(request, oracle.keyspace, partial(oracle.evaluate, request))
            assert served.decision == oracle.evaluate(request), (step, served.tier)
            seen.add(served.tier)
            for c in caches:  # let background writes land so Redis is really used
                while c._pending:
                    await asyncio.sleep(0.001)
    finally:
        for c in caches:
            await c.aclose()
