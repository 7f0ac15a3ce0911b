"""Envoy ext_authz throughput: meshward vs a no-op ``grpc.aio`` Check servicer.

Side by side in one run, on the same machine, each loaded in turn by
``h2load`` (nghttp2) with a gRPC-framed CheckRequest body:

1. no-op: a ``grpc.aio`` server on uvloop whose Check returns OK at once;
2. ``meshward pdp serve`` on the example policies, the caller an mTLS
   principal (``attributes.source.principal``), 1 worker;
3. the same with a JWT-SVID bearer token instead;
4. the mTLS case with ``--workers 2``.

Printed: requests/s, p50 and p99 latency (from h2load's per-request log),
and each meshward figure as a ratio to the no-op baseline. Target: mTLS,
1 worker >= 0.6. h2load runs on the same cores as the servers, so absolute
figures are lower bounds; the ratios are what to compare. Every request is
checked to be an allow before the load starts. Tune with BENCH_SECONDS,
BENCH_CLIENTS, BENCH_STREAMS.
"""

from __future__ import annotations

import os
import shutil
import socket
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

from bench._harness import REPO, meshward_env, server_process
from meshward.spiffe import TrustDomain
from meshward.spiffe_bundle import SpiffeBundle

SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "4"))
STREAMS = int(os.environ.get("BENCH_STREAMS", "16"))
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    data = message.SerializeToString()
    return b"\x00" + struct.pack(">I", len(data)) + data


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float


def _h2load(port: int, body: Path, log: Path) -> Result:
    argv = [
        "h2load", "-c", str(CLIENTS), "-m", str(STREAMS), "-t", "1",
        "-D", f"{SECONDS:g}", "--warm-up-time=1",
        "-d", str(body), "--log-file", str(log),
        "-H", "content-type: application/grpc", "-H", "te: trailers",
        f"http://127.0.0.1:{port}{PATH}",
    ]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=SECONDS + 60)
    rps = 0.0
    for line in out.stdout.splitlines():
        if line.startswith("finished in"):
            rps = float(line.split(",")[1].split()[0])
    elapsed = []
    for line in log.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[1] == "200":
            elapsed.append(int(parts[2]) / 1000.0)
    if not elapsed:
        raise RuntimeError("h2load completed no request:\n" + out.stdout)
    cuts = statistics.quantiles(elapsed, n=100)
    return Result(rps, cuts[49], cuts[98])


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


def _meshward(work: Path, port: int, workers: int) -> list[str]:
    config = work / "meshward.toml"
    # Envoy's bare principal (no certificate to verify): the pipeline, not X.509, is measured.
    config.write_text(
        "[pdp]\ntrust_peer_principal = true\ntrust_bare_principal = true\n"
        'trust_domain = "meshward.local"\n'
    )
    return [
        sys.executable, "-m", "meshward", "--config", str(config), "--log-level", "info",
        "--state-dir", str(work / "state"),
        "pdp", "serve", "--policies", str(REPO / "policies"),
        "--grpc-addr", f"127.0.0.1:{port}", "--http-addr", f"127.0.0.1:{_free_port()}",
        "--trust-bundle", str(work / "bundle.json"), "--workers", str(workers),
    ]  # fmt: skip


def _measure(port: int, request: pb.CheckRequest, work: Path, name: str) -> Result:
    _wait_grpc(port)
    _assert_allows(port, request, name, work / "server.log")
    body = work / f"{name}.bin"
    body.write_bytes(_framed(request))
    return _h2load(port, body, work / f"{name}.log")


def main() -> None:
    if shutil.which("h2load") is None:
        raise SystemExit("h2load is not installed (Debian: nghttp2-client); run make system-deps")
    mtls = _request(principal=f"{SHOP}/frontend")
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ext-authz-") as tmp:
        work = Path(tmp)
        token = _keys(work)
        jwt_request = _request(token=token)
        port = _free_port()
        log = work / "server.log"
        with server_process(
            [sys.executable, "-c", _NOOP, f"127.0.0.1:{port}"], meshward_env(), log
        ):
            results["no-op grpc.aio servicer"] = _measure(port, mtls, work, "noop")
        port = _free_port()
        with server_process(_meshward(work, port, 1), meshward_env(), log):
            results["meshward, mTLS principal, 1 worker"] = _measure(port, mtls, work, "mtls")
            results["meshward, JWT-SVID, 1 worker"] = _measure(port, jwt_request, work, "jwt")
        port = _free_port()
        with server_process(_meshward(work, port, 2), meshward_env(), log):
            results["meshward, mTLS principal, 2 workers"] = _measure(port, mtls, work, "mtls2")
    base = results["no-op grpc.aio servicer"].rps
    print(f"h2load: {CLIENTS} connections x {STREAMS} streams, {SECONDS:g} s each, 1 thread")
    print(f"{'case':40} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6}")
    for name, r in results.items():
        print(f"{name:40} {r.rps:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.rps / base:6.2f}")
    ratio = results["meshward, mTLS principal, 1 worker"].rps / base
    print(f"mTLS, 1 worker / no-op = {ratio:.2f} (target >= 0.6)")


if __name__ == "__main__":
    main()
