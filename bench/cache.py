"""Decision cache: throughput and latency over gRPC ext_authz, uncached vs each tier.

Side by side in one run, one ``meshward pdp serve`` process (1 worker) per
mode, loaded in turn by the same client:

1. uncached: ``[cache] enabled = false`` — every check is a Cedar evaluation;
2. in-process tier only (the default without Redis);
3. Redis tier only: ``--redis-url`` to a local ``redis-server`` and
   ``[cache] local_max_entries = 0``, so every check makes a Redis round trip.

Traffic is realistic rather than one repeated request: 300 mTLS principals
(``attributes.source.principal``), each calling with one of a few paths, a
unique ``x-request-id`` per request (no policy reads it, so it must not break
reuse), against policies that read ``context.http.path`` (about 200 of them, so
evaluation costs what it costs on a real policy set). About 1 in 6 requests is
denied. ``h2load`` cannot vary the request body, so the client is a
``grpc.aio`` program in its own process that patches the request id into a
pre-serialised body (no protobuf work per request) and keeps
``BENCH_CONCURRENCY`` checks in flight.

Printed per mode: checks/s, p50 and p99 latency as the client saw them, the
hit ratio from the PDP's own ``meshward_cache_requests_total``, and the PDP
process's CPU time per check (``/proc/<pid>/stat`` over the decisions it
counted), each as a ratio to the uncached run. The client shares the cores
with the server and a Python gRPC client saturates near the server's own
cached rate, so throughput is a lower bound and noisy on a busy machine; CPU
per check is the steadier figure of what the cache saves. Tune with
BENCH_SECONDS, BENCH_WARMUP, BENCH_CONCURRENCY.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import httpx
import uvloop
from envoy.service.auth.v3 import attribute_context_pb2 as ac
from envoy.service.auth.v3 import external_auth_pb2 as pb
from envoy.service.auth.v3 import external_auth_pb2_grpc
from google.rpc import code_pb2
from prometheus_client.parser import text_string_to_metric_families

from bench._harness import REPO, free_port, meshward_env, server_process

SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
WARMUP = float(os.environ.get("BENCH_WARMUP", "3"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))
PRINCIPALS = 300
# Paths and how often each is called (a few hot endpoints, as real traffic has).
PATHS = {
    "/items/1": 40,
    "/items/2": 20,
    "/items/search": 15,
    "/items/3": 10,
    "/items/4": 5,
    "/admin": 10,
}
TD = "meshward.local"
SERVICE = f"spiffe://{TD}/ns/shop/sa/catalog"
CHECK = "/envoy.service.auth.v3.Authorization/Check"
RID = b"RID-0000000000"  # same length as every request id patched in

POLICIES = """
@id("catalog-items")
permit (principal is Workload, action in Action::"read", resource == Service::"{service}")
when {{ context has http && context.http.path like "/items/*"
       && context.http.path != "/items/search" }};

@id("catalog-search")
permit (principal, action == Action::"GET", resource == Service::"{service}")
when {{ context has http && context.http.path == "/items/search" }};
"""
PER_TEAM = """
@id("team-{i}")
permit (principal == Workload::"spiffe://{td}/ns/team{i}/sa/api", action,
        resource == Service::"spiffe://{td}/ns/team{i}/sa/db")
when {{ context has http && context.http.path like "/v1/*" }};
"""


def _policies(work: Path) -> Path:
    directory = work / "policies"
    directory.mkdir()
    shutil.copy(REPO / "policies" / "schema.cedarschema", directory)
    text = POLICIES.format(service=SERVICE)
    text += "".join(PER_TEAM.format(i=i, td=TD) for i in range(200))
    (directory / "bench.cedar").write_text(text)
    return directory


def _body(principal: int, path: str) -> bytes:
    request = pb.CheckRequest(
        attributes=ac.AttributeContext(
            source=ac.AttributeContext.Peer(principal=f"spiffe://{TD}/ns/bench/sa/w{principal}"),
            destination=ac.AttributeContext.Peer(principal=SERVICE),
            request=ac.AttributeContext.Request(
                http=ac.AttributeContext.HttpRequest(
                    method="GET",
                    path=path,
                    host="catalog",
                    headers={"x-request-id": RID.decode(), "user-agent": "bench"},
                )
            ),
        )
    )
    body: bytes = request.SerializeToString()
    return body


# -- the client (runs in its own process: python -m bench.cache client ...) -------


async def _client(addr: str, seconds: float, warmup: float, concurrency: int) -> dict[str, float]:
    bodies = [_body(p, path) for p in range(PRINCIPALS) for path in PATHS]
    weights = [PATHS[path] for _ in range(PRINCIPALS) for path in PATHS]
    rng = random.Random(7)
    picks = rng.choices(bodies, weights, k=65536)
    counter = 0
    latencies: list[float] = []
    failures = 0
    async with grpc.aio.insecure_channel(addr) as channel:
        check = channel.unary_unary(CHECK)  # bytes in, bytes out: no protobuf work here
        loop = asyncio.get_running_loop()
        start = loop.time()
        measure_from = start + warmup
        end = measure_from + seconds

        async def worker() -> None:
            nonlocal counter, failures
            while (now := loop.time()) < end:
                counter += 1
                body = picks[counter & 65535].replace(RID, b"RID-%010d" % counter)
                try:
                    await check(body, timeout=10)
                except grpc.RpcError:
                    failures += 1
                    continue
                if now >= measure_from:
                    latencies.append(loop.time() - now)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "rps": len(latencies) / seconds,
        "p50_ms": cuts[49] * 1000,
        "p99_ms": cuts[98] * 1000,
        "failures": failures,
    }


def _client_main(argv: list[str]) -> None:
    addr, seconds, warmup, concurrency = argv[0], float(argv[1]), float(argv[2]), int(argv[3])
    print(json.dumps(uvloop.run(_client(addr, seconds, warmup, concurrency))))


# -- the harness -------------------------------------------------------------------


def _wait(http_port: int, grpc_port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{http_port}/readyz").status_code == 200:
                break
        time.sleep(0.1)
    else:
        raise RuntimeError("the PDP did not become ready")
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        allowed = stub.Check(pb.CheckRequest.FromString(_body(1, "/items/1")), timeout=10)
        denied = stub.Check(pb.CheckRequest.FromString(_body(1, "/admin")), timeout=10)
    if allowed.status.code != code_pb2.OK or denied.status.code != code_pb2.PERMISSION_DENIED:
        raise RuntimeError("the benchmark policies do not decide as intended")


def _counters(http_port: int) -> dict[str, float]:
    """Cache answers by tier, Redis errors, and decisions, from the PDP's /metrics."""
    text = httpx.get(f"http://127.0.0.1:{http_port}/metrics").text
    out: dict[str, float] = {"errors": 0.0, "decisions": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            if family.name == "meshward_cache_requests":
                out[sample.labels["tier"]] = sample.value
            elif family.name == "meshward_cache_errors":
                out["errors"] += sample.value
            elif family.name == "meshward_pdp_decisions":
                out["decisions"] += sample.value
    return out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_mode(work: Path, name: str, cache: str, redis_url: str | None) -> dict[str, float]:
    config = work / f"{name}.toml"
    # Envoy's bare principal (no certificate to verify): the cache, not X.509, is measured.
    config.write_text(
        f'[pdp]\ntrust_peer_principal = true\ntrust_bare_principal = true\ntrust_domain = "{TD}"\n'
        f"{cache}"
    )
    grpc_port, http_port = free_port(), free_port()
    argv = [
        sys.executable, "-m", "meshward", "--config", str(config), "--log-level", "warning",
        "--state-dir", str(work / f"state-{name}"),
        "pdp", "serve", "--policies", str(work / "policies"),
        "--grpc-addr", f"127.0.0.1:{grpc_port}", "--http-addr", f"127.0.0.1:{http_port}",
    ]  # fmt: skip
    if redis_url:
        argv += ["--redis-url", redis_url]
    with server_process(argv, meshward_env()) as server:
        _wait(http_port, grpc_port)
        client = [
            sys.executable, "-m", "bench.cache", "client", f"127.0.0.1:{grpc_port}",
            str(SECONDS), str(WARMUP), str(CONCURRENCY),
        ]  # fmt: skip
        # The metrics window is the whole client run; the warm-up misses are a
        # small part of it and make the hit ratio a slight under-estimate.
        before, cpu_before = _counters(http_port), _cpu_seconds(server.pid)
        out = subprocess.run(
            client, env=meshward_env(), cwd=REPO, capture_output=True, text=True, check=True,
            timeout=SECONDS + WARMUP + 120,
        )  # fmt: skip
        cpu = _cpu_seconds(server.pid) - cpu_before
        after = _counters(http_port)
    result: dict[str, float] = json.loads(out.stdout)
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    answered = sum(delta.get(t, 0.0) for t in ("local", "redis", "miss", "bypass"))
    hits = delta.get("local", 0.0) + delta.get("redis", 0.0)
    result["hit_ratio"] = hits / answered if answered else 0.0
    result["redis_errors"] = delta["errors"]
    result["cpu_us"] = cpu / delta["decisions"] * 1e6 if delta["decisions"] else 0.0
    return result


def main() -> None:
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed; run make system-deps")
    with tempfile.TemporaryDirectory(prefix="meshward-bench-cache-") as tmp:
        work = Path(tmp)
        _policies(work)
        redis_port = free_port()
        redis_argv = [
            "redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(work),
        ]  # fmt: skip
        with server_process(redis_argv):
            modes = {
                "uncached": ("[cache]\nenabled = false\n", None),
                "in-process": ("", None),
                "redis only": (
                    "[cache]\nlocal_max_entries = 0\n",
                    f"redis://127.0.0.1:{redis_port}/0",
                ),
            }
            results = {
                name: _run_mode(work, name.split()[0], *spec) for name, spec in modes.items()
            }
    base = results["uncached"]["rps"]
    print(
        f"{PRINCIPALS} principals x {len(PATHS)} paths, unique x-request-id, "
        f"{CONCURRENCY} in flight, {SECONDS:g} s each (after {WARMUP:g} s warm-up)"
    )
    cpu_base = results["uncached"]["cpu_us"]
    head = ("mode", "checks/s", "x", "p50 ms", "p99 ms", "hit ratio", "CPU us/check", "x")
    print("{:<12} {:>9} {:>5} {:>7} {:>7} {:>9} {:>12} {:>5}".format(*head))
    for name, r in results.items():
        print(
            f"{name:<12} {r['rps']:>9.0f} {r['rps'] / base:>5.2f} {r['p50_ms']:>7.2f} "
            f"{r['p99_ms']:>7.2f} {r['hit_ratio']:>9.3f} {r['cpu_us']:>12.0f} "
            f"{r['cpu_us'] / cpu_base:>5.2f}"
        )
        if r["redis_errors"]:
            print(f"  {name}: {r['redis_errors']:.0f} Redis errors absorbed (timeouts under load)")
        if r["failures"]:
            print(f"  {name}: {r['failures']:.0f} checks failed")


if __name__ == "__main__":
    if sys.argv[1:2] == ["client"]:
        _client_main(sys.argv[2:])
    else:
        main()
