"""Decision latency as the policy set grows: the sliced engine vs plain cedarpy.

Generates 10, 100, 1,000 and 10,000 policies shaped like a real mesh's (per
workload-pair permits with a path condition, per-team group permits on a
namespace, a few global forbids), loads them as a bundle, and measures, side
by side in the same run, the median latency of one decision:

- engine: ``Engine.evaluate`` (scope slicing, memoized per-slice PolicySets);
- cedarpy: ``cedarpy.is_authorized`` on the whole pre-parsed PolicySet.

Prints the table and the ratio latency@10,000 / latency@10 for each (the
engine's target is <= 2.0; plain Cedar grows with the number of policies).
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cedarpy

from authz.engine.bundle import PolicyBundle, load_bundle
from authz.engine.cedar import principal_entities, to_cedar_request
from authz.engine.evaluation import Engine
from authz.engine.model import AccessRequest, EntityUid, Identity

SIZES = (10, 100, 1_000, 10_000)
REQUESTS = 200
ROUNDS = 3
TD = "spiffe://meshward.local"

SCHEMA = """
type Http = { method: String, host: String, path: String, query: String, headers: {} };
type Ctx = { http?: Http, peer?: { spiffe_id: String, trust_domain: String } };
entity Group in [Group];
entity Workload;
entity User in [Group];
entity Anonymous;
entity Service in [Service];
action "read", "write";
action "GET", "HEAD" in ["read"]
  appliesTo { principal: [Workload, User, Anonymous], resource: [Service], context: Ctx };
action "POST", "PUT", "DELETE" in ["write"]
  appliesTo { principal: [Workload, User, Anonymous], resource: [Service], context: Ctx };
"""

GLOBAL = """
@id("no-anonymous-writes")
forbid (principal is Anonymous, action in Action::"write", resource);
@id("foreign-trust-domains")
forbid (principal, action, resource)
when { context has peer && context.peer.trust_domain != "meshward.local" };
@id("admins")
permit (principal in Group::"admins", action, resource);
"""


def _workload(ns: int, sa: int) -> str:
    return f"{TD}/ns/ns{ns}/sa/svc{sa}"


def generate(
    count: int, rng: random.Random
) -> tuple[str, list[dict[str, Any]], list[AccessRequest]]:
    """``count`` policies, the static entities and sample requests that hit them."""
    namespaces = max(1, count // 50)
    per_ns = 10
    policies = [GLOBAL]
    requests: list[AccessRequest] = []
    entities: list[dict[str, Any]] = [
        {"uid": {"type": "Group", "id": "admins"}, "attrs": {}, "parents": []}
    ]
    for ns in range(namespaces):
        entities.append({"uid": {"type": "Service", "id": f"ns{ns}"}, "attrs": {}, "parents": []})
        entities.append({"uid": {"type": "Group", "id": f"team{ns}"}, "attrs": {}, "parents": []})
        for sa in range(per_ns):
            entities.append(
                {
                    "uid": {"type": "Service", "id": _workload(ns, sa)},
                    "attrs": {},
                    "parents": [{"type": "Service", "id": f"ns{ns}"}],
                }
            )
    made = 3
    while made < count:
        ns = rng.randrange(namespaces)
        if made % 10 == 0:
            policies.append(
                f'permit (principal in Group::"team{ns}", action in Action::"read", '
                f'resource in Service::"ns{ns}");\n'
            )
        else:
            src, dst = rng.randrange(per_ns), rng.randrange(per_ns)
            action = rng.choice(['action in Action::"read"', 'action == Action::"POST"'])
            policies.append(
                f'permit (principal == Workload::"{_workload(ns, src)}", {action}, '
                f'resource == Service::"{_workload(ns, dst)}")\n'
                f'when {{ context has http && context.http.path like "/api/v{made % 3}/*" }};\n'
            )
        made += 1
    for i in range(REQUESTS):
        ns = rng.randrange(namespaces)
        target = EntityUid("Service", _workload(ns, rng.randrange(per_ns)))
        http: dict[str, Any] = {
            "method": "GET",
            "host": target.id,
            "path": f"/api/v{i % 3}/items",
            "query": "",
            "headers": {},
        }
        if i % 4 == 0:
            who = Identity(EntityUid("User", f"idp|user{i}"), (EntityUid("Group", f"team{ns}"),))
        else:
            who = Identity(EntityUid("Workload", _workload(ns, rng.randrange(per_ns))))
        domain = "meshward.local" if i % 2 else "x"
        context = {"http": http, "peer": {"spiffe_id": _workload(ns, 0), "trust_domain": domain}}
        requests.append(AccessRequest(who, EntityUid("Action", "GET"), target, context))
    return "".join(policies), entities, requests


Decide = Callable[[AccessRequest], object]


def _median_us(decide: Decide, requests: list[AccessRequest]) -> float:
    samples: list[float] = []
    for _ in range(ROUNDS):
        for request in requests:
            start = time.perf_counter()
            decide(request)
            samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def _plain(bundle: PolicyBundle) -> Callable[[AccessRequest], bool]:
    def decide(request: AccessRequest) -> bool:
        identity = request.identity
        entities = bundle.entities
        if identity.parents:
            entities = entities.with_added_json_str(json.dumps(principal_entities(identity)))
        return cedarpy.is_authorized(to_cedar_request(request), bundle.policy_set, entities).allowed

    return decide


def main() -> None:
    rng = random.Random(20261125)
    rows: list[tuple[int, float, float, float, int]] = []
    print(
        f"{'policies':>9} {'engine µs':>10} {'cedarpy µs':>11} {'speed-up':>9} "
        f"{'load s':>7} {'candidates':>10}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for size in SIZES:
            text, entities, requests = generate(size, rng)
            root = Path(tmp) / f"p{size}"
            root.mkdir()
            (root / "schema.cedarschema").write_text(SCHEMA)
            (root / "mesh.cedar").write_text(text)
            (root / "entities.json").write_text(json.dumps(entities))
            started = time.perf_counter()
            bundle = load_bundle(root)
            engine = Engine(bundle)
            load_s = time.perf_counter() - started
            plain = _plain(bundle)
            for request in requests:  # warm up both, and check they agree
                if engine.evaluate(request).allowed != plain(request):
                    raise SystemExit(f"engine and cedarpy disagree at {size} policies")
            candidates = max(len(engine.candidates(r)) for r in requests)
            engine_us = _median_us(engine.evaluate, requests)
            plain_us = _median_us(plain, requests)
            rows.append((size, engine_us, plain_us, load_s, candidates))
            print(
                f"{size:>9} {engine_us:>10.1f} {plain_us:>11.1f} {plain_us / engine_us:>8.1f}x "
                f"{load_s:>7.2f} {candidates:>10}",
                flush=True,
            )
    first, last = rows[0], rows[-1]
    engine_ratio = last[1] / first[1]
    plain_ratio = last[2] / first[2]
    print(
        f"latency@{last[0]:,} / latency@{first[0]:,}: engine {engine_ratio:.2f} "
        f"(target <= 2.0: {'met' if engine_ratio <= 2.0 else 'NOT met'}), "
        f"cedarpy {plain_ratio:.1f}"
    )


if __name__ == "__main__":
    main()
