"""One engine decision on the shop example (``policies/``), in-process, by request shape.

Prints the cost of ``Engine.evaluate`` for the requests a mesh makes most —
a workload over mTLS, a user through the frontend with groups
from its token, an anonymous caller — and, side by side in the same run, one
``cedarpy.is_authorized`` call on the whole pre-parsed policy set with the
request's entities (what a decision costs without the engine's preparation).
Target: one decision <= 60 µs.

The figure is CPU time of this thread per decision (the median over batches
of 200), which a shared machine disturbs far less than wall time; the wall
p50 of single calls is printed beside it.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable

import cedarpy

from authz.engine.bundle import PolicyBundle, load_bundle
from authz.engine.cedar import principal_entities, to_cedar_request
from authz.engine.evaluation import Engine
from authz.engine.model import ANONYMOUS, AccessRequest, EntityUid, Identity
from bench.policy_reload import REPO

SHOP = "spiffe://meshward.local/ns/shop/sa"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "20000"))
BATCH = 200
TARGET_US = 60.0


def _http(method: str, path: str, host: str) -> dict[str, object]:
    headers = {"user-agent": "curl/8", "accept": "*/*", "x-request-id": "abc"}
    return {"method": method, "host": host, "path": path, "query": "", "headers": headers}


def _peer(spiffe_id: str) -> dict[str, str]:
    return {"spiffe_id": spiffe_id, "trust_domain": "meshward.local"}


def requests() -> dict[str, AccessRequest]:
    """The shapes the adapters build (an mTLS workload carries its trust domain)."""
    catalog = EntityUid("Service", f"{SHOP}/catalog")
    frontend = f"{SHOP}/frontend"
    return {
        "workload mTLS": AccessRequest(
            Identity(
                EntityUid("Workload", frontend), attributes={"trust_domain": "meshward.local"}
            ),
            EntityUid("Action", "GET"),
            catalog,
            {"http": _http("GET", "/items", "catalog"), "peer": _peer(frontend)},
        ),
        "user + groups": AccessRequest(
            Identity(
                EntityUid("User", "https://id.meshward.local|alice"),
                (EntityUid("Group", "https://id.meshward.local|customers"),),
            ),
            EntityUid("Action", "GET"),
            catalog,
            {"http": _http("GET", "/products", "catalog"), "peer": _peer(frontend)},
        ),
        "anonymous": AccessRequest(
            ANONYMOUS,
            EntityUid("Action", "POST"),
            EntityUid("Service", f"{SHOP}/orders"),
            {"http": _http("POST", "/api/orders", "orders")},
        ),
    }


Decide = Callable[[AccessRequest], object]


def _timed(decide: Decide, request: AccessRequest) -> tuple[float, float]:
    """(CPU µs per decision: median over batches, wall µs: median of single calls)."""
    for _ in range(BATCH):
        decide(request)
    cpu = []
    for _ in range(max(1, ROUNDS // BATCH)):
        start = time.thread_time()
        for _ in range(BATCH):
            decide(request)
        cpu.append((time.thread_time() - start) / BATCH)
    wall = []
    for _ in range(min(ROUNDS, 2000)):
        start = time.perf_counter()
        decide(request)
        wall.append(time.perf_counter() - start)
    return statistics.median(cpu) * 1e6, statistics.median(wall) * 1e6


def _plain(bundle: PolicyBundle) -> Callable[[AccessRequest], bool]:
    def decide(request: AccessRequest) -> bool:
        entities = bundle.entities
        if request.identity.parents:
            entities = entities.with_added_json_str(
                json.dumps(principal_entities(request.identity))
            )
        return cedarpy.is_authorized(to_cedar_request(request), bundle.policy_set, entities).allowed

    return decide


def main() -> None:
    bundle = load_bundle(REPO / "policies")
    engine = Engine(bundle)
    plain = _plain(bundle)
    print(f"{'request':<15} {'engine cpu µs':>13} {'wall p50':>9} {'cedarpy cpu µs':>15}")
    costs = []
    for name, request in requests().items():
        if engine.evaluate(request).allowed != plain(request):
            raise SystemExit(f"engine and cedarpy disagree on {name}")
        cpu, wall = _timed(engine.evaluate, request)
        base, _ = _timed(plain, request)
        costs.append(cpu)
        print(f"{name:<15} {cpu:>13.1f} {wall:>9.1f} {base:>15.1f}", flush=True)
    worst = max(costs)
    verdict = "met" if worst <= TARGET_US else "NOT met"
    print(f"one decision (worst shape): {worst:.1f} µs (target <= {TARGET_US:.0f}: {verdict})")


if __name__ == "__main__":
    main()
