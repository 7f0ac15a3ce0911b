"""Envoy ext_authz throughput: meshward vs a no-op ``grpc.aio`` Check servicer.

Side by side in one run, on the same machine, each loaded in turn by
``h2load`` (nghttp2) with a gRPC-framed CheckRequest body:

1. no-op: a ``grpc.aio`` server on uvloop whose Check returns OK at once;
2. ``meshward pdp serve`` on the example policies, the caller an mTLS
   principal (``attributes.source.principal``), 1 worker (the decision is
   cached after the first request);
3. the same with the decision cache off (every request evaluated);
4. the same with a JWT-SVID bearer token instead;
5. the mTLS case with ``--workers 2``;
6. paced: the no-op and meshward (mTLS, 1 worker) each at a fixed
   ``BENCH_RATE`` requests/s in total (h2load ``--rps``), p99 side by side.

Printed: requests/s, p50 and p99 latency (from h2load's per-request log),
the server's CPU time per completed request (``/proc``: every thread, and
every worker with ``--workers``), and each meshward figure as a ratio to the
no-op baseline, with the targets:
cached >= 0.8, uncached >= 0.6, 2 workers >= 1.3 (all against one no-op
process), paced p99 <= 1.2x the no-op's. h2load runs on the same cores as the
servers, so absolute figures are lower bounds; the ratios are what to
compare. Every request is checked to be an allow before the load starts.
All servers run at once and the cases take turns, BENCH_ROUNDS times; each
ratio is taken against the no-op run of the same round (a shared machine's
load moves from one second to the next). The throughput ratios are also given
as the no-op's CPU per request over meshward's: roughly the ratio each
server would reach on a core of its own, and far steadier on a busy machine
(for two workers: both workers' CPU, what a request costs, not the 1.3
target). Tune with BENCH_SECONDS, BENCH_CLIENTS, BENCH_STREAMS, BENCH_RATE,
BENCH_ROUNDS.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from envoy.service.auth.v3 import attribute_context_pb2 as ac
from envoy.service.auth.v3 import external_auth_pb2 as pb
from envoy.service.auth.v3 import external_auth_pb2_grpc
from google.rpc import code_pb2

from bench._harness import REPO, free_port, meshward_env, server_process
from meshward.spiffe import TrustDomain
from meshward.spiffe_bundle import SpiffeBundle

SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "4"))
STREAMS = int(os.environ.get("BENCH_STREAMS", "16"))
RATE = int(os.environ.get("BENCH_RATE", "1000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SHOP = "spiffe://meshward.local/ns/shop/sa"
PATH = "/envoy.service.auth.v3.Authorization/Check"

_NOOP = """
import asyncio, sys, uvloop, grpc
from envoy.service.auth.v3 import external_auth_pb2 as pb, external_auth_pb2_grpc as g
from google.rpc import code_pb2, status_pb2

class Noop(g.AuthorizationServicer):
    async def Check(self, request, context):
        return pb.CheckResponse(status=status_pb2.Status(code=code_pb2.OK))

async def main():
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    g.add_AuthorizationServicer_to_server(Noop(), server)
    server.add_insecure_port(sys.argv[1])
    await server.start()
    await server.wait_for_termination()

uvloop.run(main())
"""


def _request(method: str = "GET", principal: str = "", token: str = "") -> pb.CheckRequest:
    headers = {"user-agent": "h2load", "x-request-id": "bench"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return pb.CheckRequest(
        attributes=ac.AttributeContext(
            source=ac.AttributeContext.Peer(principal=principal),
            destination=ac.AttributeContext.Peer(principal=f"{SHOP}/catalog"),
            request=ac.AttributeContext.Request(
                http=ac.AttributeContext.HttpRequest(
                    method=method, path="/items", host="catalog", headers=headers
                )
            ),
        )
    )


def _framed(message: pb.CheckRequest) -> bytes:
    data: bytes = message.SerializeToString()
    return b"\x00" + struct.pack(">I", len(data)) + data


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # the server's CPU time (every thread, every worker) per completed request


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and, recursively, its children (the workers)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / _TICKS
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            total += sum(_cpu_seconds(int(child)) for child in task.read_text().split())
    return total


def _h2load(port: int, pid: int, body: Path, log: Path, *, paced: bool = False) -> Result:
    pacing = [f"--rps={max(1, RATE // CLIENTS)}"] if paced else []
    argv = [
        "h2load", "-c", str(CLIENTS), "-m", str(STREAMS), "-t", "1",
        "-D", f"{SECONDS:g}", "--warm-up-time=1", *pacing,
        "-d", str(body), "--log-file", str(log),
        "-H", "content-type: application/grpc", "-H", "te: trailers",
        f"http://127.0.0.1:{port}{PATH}",
    ]  # fmt: skip
    log.unlink(missing_ok=True)  # h2load appends: each run's latencies are its own
    before = _cpu_seconds(pid)
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=SECONDS + 60)
    cpu = _cpu_seconds(pid) - before
    rps = 0.0
    done = 0
    for line in out.stdout.splitlines():
        if line.startswith("finished in"):
            rps = float(line.split(",")[1].split()[0])
        elif line.startswith("requests:"):
            done = int(line.split(",")[3].split()[0])  # "... N succeeded, ..."
    elapsed = []
    for line in log.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[1] == "200":
            elapsed.append(int(parts[2]) / 1000.0)
    if not elapsed:
        raise RuntimeError("h2load completed no request:\n" + out.stdout)
    cuts = statistics.quantiles(elapsed, n=100)
    return Result(rps, cuts[49], cuts[98], 1e6 * cpu / max(done, 1))


def _wait_grpc(port: int) -> None:
    deadline = time.monotonic() + 60
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=max(deadline - time.monotonic(), 1))


def _assert_allows(port: int, request: pb.CheckRequest, name: str, log: Path) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = external_auth_pb2_grpc.AuthorizationStub(channel).Check(request, timeout=10)
    if reply.status.code != code_pb2.OK:
        server_log = log.read_text()[-4000:] if log.exists() else ""
        raise RuntimeError(
            f"{name}: the benchmark request is not allowed: {reply.denied_response.body}\n"
            f"server log:\n{server_log}"
        )


def _keys(work: Path) -> str:
    """A trust bundle with one JWT-SVID key; returns a token signed with it."""
    key = ec.generate_private_key(ec.SECP256R1())
    bundle = SpiffeBundle(TrustDomain("meshward.local"), (), {"bench": key.public_key()})
    (work / "bundle.json").write_bytes(bundle.to_json())
    # Bound to the destination, as the PDP requires of a JWT-SVID.
    claims = {"sub": f"{SHOP}/orders", "aud": f"{SHOP}/catalog", "exp": int(time.time()) + 3600}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": "bench", "typ": "JWT"})


def _meshward(work: Path, port: int, workers: int, *, cache: bool = True) -> list[str]:
    config = work / f"meshward-{'cache' if cache else 'nocache'}.toml"
    # Envoy's bare principal (no certificate to verify): the pipeline, not X.509, is measured.
    config.write_text(
        "[pdp]\ntrust_peer_principal = true\ntrust_bare_principal = true\n"
        'trust_domain = "meshward.local"\n'
        f"[cache]\nenabled = {'true' if cache else 'false'}\n"
    )
    return [
        sys.executable, "-m", "meshward", "--config", str(config), "--log-level", "info",
        "--state-dir", str(work / "state"),
        "pdp", "serve", "--policies", str(REPO / "policies"),
        "--grpc-addr", f"127.0.0.1:{port}", "--http-addr", f"127.0.0.1:{free_port()}",
        "--trust-bundle", str(work / "bundle.json"), "--workers", str(workers),
    ]  # fmt: skip


def _prepare(port: int, request: pb.CheckRequest, work: Path, name: str) -> Path:
    _wait_grpc(port)
    _assert_allows(port, request, name, work / "server.log")
    body = work / f"{name}.bin"
    body.write_bytes(_framed(request))
    return body


NOOP = "no-op grpc.aio servicer"
CACHED = "meshward, mTLS principal, 1 worker"
UNCACHED = "meshward, mTLS, 1 worker, no cache"
JWT = "meshward, JWT-SVID, 1 worker"
TWO = "meshward, mTLS principal, 2 workers"
NOOP_PACED = f"no-op, paced {RATE}/s"
PACED = f"meshward mTLS, paced {RATE}/s"


def _run(
    work: Path,
) -> tuple[dict[str, Result], dict[str, list[float]], dict[str, list[float]]]:
    """Every server up at once (idle ones cost nothing), then the cases in turn, ROUNDS times.

    Returns the median result of each case and, per case, its ratio to the
    no-op run of the same round: on a shared machine the load changes from
    one second to the next, so only runs made next to each other compare.
    """
    mtls = _request(principal=f"{SHOP}/frontend")
    token = _keys(work)
    jwt_request = _request(token=token)
    log = work / "server.log"
    ports = {name: free_port() for name in ("noop", "mesh", "nocache", "two")}
    pids: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        env = meshward_env()
        noop = [sys.executable, "-c", _NOOP, f"127.0.0.1:{ports['noop']}"]
        pids["noop"] = stack.enter_context(server_process(noop, env, log)).pid
        for name, workers, cache in (("mesh", 1, True), ("nocache", 1, False), ("two", 2, True)):
            argv = _meshward(work, ports[name], workers, cache=cache)
            server = server_process(argv, env, work / f"{name}.server.log")
            pids[name] = stack.enter_context(server).pid
        plan = {
            NOOP: ("noop", _prepare(ports["noop"], mtls, work, "noop"), False),
            CACHED: ("mesh", _prepare(ports["mesh"], mtls, work, "mtls"), False),
            UNCACHED: ("nocache", _prepare(ports["nocache"], mtls, work, "nc"), False),
            JWT: ("mesh", _prepare(ports["mesh"], jwt_request, work, "jwt"), False),
            TWO: ("two", _prepare(ports["two"], mtls, work, "two"), False),
            NOOP_PACED: ("noop", work / "noop.bin", True),
            PACED: ("mesh", work / "mtls.bin", True),
        }
        runs: dict[str, list[Result]] = {name: [] for name in plan}
        for _ in range(ROUNDS):
            for name, (server_name, body, paced) in plan.items():
                port, pid = ports[server_name], pids[server_name]
                runs[name].append(_h2load(port, pid, body, work / "h2load.log", paced=paced))
    ratios: dict[str, list[float]] = {name: [] for name in plan}
    cpu_ratios: dict[str, list[float]] = {}
    for name, results in runs.items():
        baseline = runs[NOOP_PACED] if name in (NOOP_PACED, PACED) else runs[NOOP]
        for mine, base in zip(results, baseline, strict=True):
            if name in (NOOP_PACED, PACED):
                ratios[name].append(mine.p99_ms / base.p99_ms)
            else:
                ratios[name].append(mine.rps / base.rps)
    medians = {
        name: Result(
            statistics.median(r.rps for r in results),
            statistics.median(r.p50_ms for r in results),
            statistics.median(r.p99_ms for r in results),
            statistics.median(r.cpu_us for r in results),
        )
        for name, results in runs.items()
    }
    # The same comparison in server CPU per request (no-op's / meshward's): much
    # less moved by other load on the machine than requests per second.
    for name, results in runs.items():
        if name not in (NOOP, NOOP_PACED, PACED):
            cpu_ratios[name] = [
                base.cpu_us / mine.cpu_us
                for mine, base in zip(results, runs[NOOP], strict=True)
                if mine.cpu_us > 0
            ]
    return medians, ratios, cpu_ratios


def main() -> None:
    if shutil.which("h2load") is None:
        raise SystemExit("h2load is not installed (Debian: nghttp2-client); run make system-deps")
    with tempfile.TemporaryDirectory(prefix="bench-ext-authz-") as tmp:
        results, ratios, cpu_ratios = _run(Path(tmp))
    print(
        f"h2load: {CLIENTS} connections x {STREAMS} streams, {SECONDS:g} s per run, "
        f"1 thread, {ROUNDS} rounds (medians; ratios against the no-op run of the same round)"
    )
    print(f"{'case':40} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6} {'CPU µs/req':>11}")
    for name, r in results.items():
        ratio = statistics.median(ratios[name])
        print(
            f"{name:40} {r.rps:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {ratio:6.2f} {r.cpu_us:11.0f}"
        )
    for label, name, target in (
        ("mTLS, 1 worker, cached / no-op", CACHED, 0.8),
        ("mTLS, 1 worker, uncached / no-op", UNCACHED, 0.6),
        ("mTLS, 2 workers / one no-op process", TWO, 1.3),
    ):
        ratio = statistics.median(ratios[name])
        verdict = "met" if ratio >= target else "NOT met"
        each = ", ".join(f"{x:.2f}" for x in ratios[name])
        cpu = cpu_ratios[name]
        by_cpu = f"{statistics.median(cpu):.2f}" if cpu else "n/a"
        print(
            f"{label} = {ratio:.2f} (rounds: {each}; target >= {target}: {verdict}); "
            f"by server CPU per request, no-op / meshward = {by_cpu}"
        )
    paced = statistics.median(ratios[PACED])
    each = ", ".join(f"{x:.2f}" for x in ratios[PACED])
    print(
        f"paced {RATE}/s p99: meshward {results[PACED].p99_ms:.2f} ms, "
        f"no-op {results[NOOP_PACED].p99_ms:.2f} ms, meshward / no-op {paced:.2f} "
        f"(rounds: {each}; target <= 1.2: {'met' if paced <= 1.2 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
