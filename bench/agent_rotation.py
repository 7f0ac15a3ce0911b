"""Node agent: rotation propagation and memory per SVID.

1. Time from a rotation on the CA side (new signing key, so the bundle changes)
   to the new SVID reaching an open Workload API stream (py-spiffe's
   ``X509Source``) and an open SDS stream (xds-protos client), with 1 and with
   1,000 entries on the node. Baseline, measured side by side: the time the
   same authority takes to sign the same number of SVIDs directly (key
   generation + CSR + signing, no agent). The ratio is the agent's overhead.
2. Memory the agent holds at 1,000 entries (tracemalloc), against the bytes of
   the SVIDs themselves (DER chain + PKCS#8 key) as the baseline.

Part 1 runs twice: against the in-process signer the agent tests use (a real
ECDSA CA; the figures measure the agent alone), and against the real
``meshward ca serve`` over HTTPS, where the rotation is ``POST
/v1/ca/rotate/activate`` (after an untimed ``prepare``: the new signing CA
signs while the bundle's keys stay the same) and the baseline is a plain client asking the same CA
API for the same number of SVIDs, one after another.
"""

from __future__ import annotations

import asyncio
import gc
import random
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc
from spiffe import X509Source

from agent.ca_client import CaClient, node_selector
from agent.hub import SnapshotHub
from agent.model import Entry, HeldSvid
from agent.node import AgentConfig, NodeAgent, build_csr
from agent.sds import SECRET_TYPE_URL, SdsService, serve_sds
from agent.workload_api import WorkloadApi, serve_workload_api
from bench._authority import LocalAuthority
from bench._harness import meshward_env
from bench.ca_issue import _servers
from ca.issuance import build_csr as build_plain_csr
from meshward.clock import SystemClock
from meshward.spiffe import SpiffeId, TrustDomain

ROUNDS = 3


def _entries(n: int) -> list[Entry]:
    # The measured workload (this process, uid 0) matches entry 0 only; the
    # others belong to other uids on the node, as on a busy node.
    out = [Entry("e0", SpiffeId.parse("spiffe://example.org/w/0"), frozenset({"unix:uid:0"}))]
    out += [
        Entry(
            f"e{i}",
            SpiffeId.parse(f"spiffe://example.org/w/{i}"),
            frozenset({f"unix:uid:{10000 + i}"}),
        )
        for i in range(1, n)
    ]
    return out


async def _direct(authority: LocalAuthority, entries: list[Entry]) -> float:
    start = time.perf_counter()
    for entry in entries:
        key = ec.generate_private_key(ec.SECP256R1())
        chain = await authority.sign_x509(entry, build_csr(entry, key), None)
        HeldSvid.create(entry, chain, key)
    return time.perf_counter() - start


async def _propagation(
    n: int, workdir: Path
) -> tuple[list[float], list[float], list[float], list[float]]:
    clock = SystemClock()
    authority = LocalAuthority(clock)
    authority.entries = _entries(n)
    hub = SnapshotHub()
    agent = NodeAgent(authority, hub, clock, random.Random(1), AgentConfig(sync_interval=3600))
    api = await serve_workload_api(WorkloadApi(agent), workdir / f"api{n}.sock")
    sds_addr = f"unix:{workdir / f'sds{n}.sock'}"
    sds = await serve_sds(SdsService(hub), sds_addr)
    wl_times: list[float] = []
    sds_times: list[float] = []
    all_times: list[float] = []
    direct: list[float] = []
    async with agent:
        await agent.wait_synced()
        source = await asyncio.to_thread(
            X509Source, socket_path=f"unix:{workdir / f'api{n}.sock'}", timeout_in_seconds=30
        )
        channel = grpc.aio.insecure_channel(sds_addr)
        queue: asyncio.Queue[discovery_pb2.DiscoveryRequest] = asyncio.Queue()

        async def requests() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
            while True:
                yield await queue.get()

        call = sds_pb2_grpc.SecretDiscoveryServiceStub(channel).StreamSecrets(requests())
        names = ["spiffe://example.org/w/0"]
        await queue.put(
            discovery_pb2.DiscoveryRequest(resource_names=names, type_url=SECRET_TYPE_URL)
        )
        first = await call.read()
        await queue.put(
            discovery_pb2.DiscoveryRequest(
                resource_names=names,
                type_url=SECRET_TYPE_URL,
                version_info=first.version_info,
                response_nonce=first.nonce,
            )
        )
        try:
            for _ in range(ROUNDS):
                before = source.get_x509_context().default_svid.leaf.serial_number
                held = {s.serial for s in hub.current.svids}
                start = time.perf_counter()
                authority.rotate()  # the CA side: a new signing key, a new bundle
                agent.wake()
                sds_read = asyncio.ensure_future(call.read())
                while source.get_x509_context().default_svid.leaf.serial_number == before:
                    await asyncio.sleep(0.001)
                wl_times.append(time.perf_counter() - start)
                response = await sds_read
                sds_times.append(time.perf_counter() - start)
                await _all_renewed(hub, held, n)
                all_times.append(time.perf_counter() - start)
                await queue.put(
                    discovery_pb2.DiscoveryRequest(
                        resource_names=names,
                        type_url=SECRET_TYPE_URL,
                        version_info=response.version_info,
                        response_nonce=response.nonce,
                    )
                )
                direct.append(await _direct(authority, authority.entries))
        finally:
            call.cancel()
            await channel.close()
            await asyncio.to_thread(source.close)
            api.close()
            sds.close()
            await sds.wait_closed()
    return wl_times, sds_times, all_times, direct


async def _memory(n: int) -> tuple[int, int]:
    clock = SystemClock()
    authority = LocalAuthority(clock)
    authority.entries = _entries(n)
    gc.collect()
    tracemalloc.start()
    hub = SnapshotHub()
    agent = NodeAgent(authority, hub, clock, random.Random(1))
    base = tracemalloc.get_traced_memory()[0]
    await agent.sync_once()
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    raw = sum(len(s.chain_der) + len(s.key_der) for s in hub.current.svids)
    return held, raw


async def _real_ca(
    n: int, workdir: Path
) -> tuple[list[float], list[float], list[float], list[float]]:
    node = SpiffeId.parse("spiffe://example.org/node/bench")
    state = workdir / f"ca{n}"
    env = {
        **meshward_env(),
        "MESHWARD_CA_PASSPHRASE": "bench-passphrase-123",
        "MESHWARD_CA__RATE_PER_SECOND": "1000000",
        "MESHWARD_CA__RATE_BURST": "1000000",
        "MESHWARD_LOG_LEVEL": "warning",
    }
    cli = [sys.executable, "-m", "meshward", "--state-dir", str(state), "ca"]
    for args in (["init", "--trust-domain", "example.org"], ["admin", "login"]):
        subprocess.run([*cli, *args], env=env, check=True, capture_output=True)
    admin_dir = state / "admin"
    server_ctx = ssl.create_default_context(cafile=str(admin_dir / "bundle.pem"))
    admin_ctx = ssl.create_default_context(cafile=str(admin_dir / "bundle.pem"))
    admin_ctx.load_cert_chain(admin_dir / "svid.pem", admin_dir / "key.pem")
    with _servers(state, env, [()], server_ctx) as (port,):
        url = f"https://127.0.0.1:{port}"

        def admin_client() -> httpx.Client:
            return httpx.Client(base_url=url, verify=admin_ctx, timeout=30)

        with admin_client() as admin:
            token = admin.post("/v1/join-tokens", json={"spiffe_id": str(node)}).json()["token"]
            for i in range(n):
                selectors = [
                    node_selector(node),
                    "unix:uid:0" if i == 0 else f"unix:uid:{10000 + i}",
                ]
                resp = admin.post(
                    "/v1/entries",
                    json={"spiffe_id": f"spiffe://example.org/w/{i}", "selectors": selectors},
                )
                resp.raise_for_status()
        clock = SystemClock()
        bundle_pem = httpx.get(f"{url}/v1/bundle.pem", verify=server_ctx).content
        client = CaClient(
            url, TrustDomain("example.org"), bundle_pem, workdir / f"st{n}", clock,
            lambda: token,
        )  # fmt: skip
        hub = SnapshotHub()
        agent = NodeAgent(client, hub, clock, random.Random(1), AgentConfig(sync_interval=3600))
        sock = workdir / f"rapi{n}.sock"
        api = await serve_workload_api(WorkloadApi(agent), sock)
        sds_addr = f"unix:{workdir / f'rsds{n}.sock'}"
        sds = await serve_sds(SdsService(hub), sds_addr)
        wl_times: list[float] = []
        sds_times: list[float] = []
        all_times: list[float] = []
        direct: list[float] = []
        async with agent:
            await agent.wait_synced()
            source = await asyncio.to_thread(
                X509Source, socket_path=f"unix:{sock}", timeout_in_seconds=60
            )
            channel = grpc.aio.insecure_channel(sds_addr)
            queue: asyncio.Queue[discovery_pb2.DiscoveryRequest] = asyncio.Queue()

            async def requests() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
                while True:
                    yield await queue.get()

            call = sds_pb2_grpc.SecretDiscoveryServiceStub(channel).StreamSecrets(requests())
            names = ["spiffe://example.org/w/0"]
            await queue.put(
                discovery_pb2.DiscoveryRequest(resource_names=names, type_url=SECRET_TYPE_URL)
            )
            last = await call.read()
            try:
                with admin_client() as admin:
                    for _round in range(ROUNDS):
                        # The next CA is published first (untimed, and unseen by the
                        # agent, whose next sync is an hour away).
                        resp = await asyncio.to_thread(admin.post, "/v1/ca/rotate/prepare")
                        resp.raise_for_status()
                        await queue.put(
                            discovery_pb2.DiscoveryRequest(
                                resource_names=names, type_url=SECRET_TYPE_URL,
                                version_info=last.version_info, response_nonce=last.nonce,
                            )
                        )  # fmt: skip
                        before = source.get_x509_context().default_svid.leaf.serial_number
                        held = {s.serial for s in hub.current.svids}
                        sds_read = asyncio.ensure_future(call.read())
                        # Timed: the new CA signs; only the bundle's sequence changes.
                        resp = await asyncio.to_thread(admin.post, "/v1/ca/rotate/activate")
                        resp.raise_for_status()
                        # The rotation is done on the CA side: the new bundle is published.
                        start = time.perf_counter()
                        agent.wake()
                        while source.get_x509_context().default_svid.leaf.serial_number == before:
                            await asyncio.sleep(0.001)
                        wl_times.append(time.perf_counter() - start)
                        last = await sds_read
                        sds_times.append(time.perf_counter() - start)
                        await _all_renewed(hub, held, n)
                        all_times.append(time.perf_counter() - start)

                        def plain(count: int = n) -> float:
                            begin = time.perf_counter()
                            with httpx.Client(base_url=url, verify=admin_ctx, timeout=60) as http:
                                for _ in range(count):
                                    csr = build_plain_csr(ec.generate_private_key(ec.SECP256R1()))
                                    http.post("/v1/svid/x509", json={"csr": csr.decode()})
                            return time.perf_counter() - begin

                        direct.append(await asyncio.to_thread(plain))
            finally:
                call.cancel()
                await channel.close()
                await asyncio.to_thread(source.close)
                api.close()
                sds.close()
                await sds.wait_closed()
                await client.aclose()
        return wl_times, sds_times, all_times, direct


async def _all_renewed(hub: SnapshotHub, held: set[int], n: int) -> None:
    while True:
        svids = hub.current.svids
        if len(svids) == n and not {s.serial for s in svids} & held:
            return
        await asyncio.sleep(0.001)


def _report(
    label: str, n: int, wl: list[float], sds: list[float], every: list[float], direct: list[float]
) -> None:
    wl_m, sds_m, all_m, d_m = (statistics.median(x) for x in (wl, sds, every, direct))
    print(
        f"{label:8s} entries={n:5d}  rotation -> Workload API stream {wl_m * 1000:8.1f} ms,"
        f" SDS stream {sds_m * 1000:8.1f} ms, all {n} renewed {all_m * 1000:8.1f} ms"
        f" | baseline: {n} SVIDs signed directly {d_m * 1000:8.1f} ms"
        f" | ratio all-renewed/baseline {all_m / d_m:5.2f} (median of {ROUNDS})"
    )


def main() -> None:
    async def run() -> None:
        with tempfile.TemporaryDirectory(prefix="mwb") as tmp:
            for n in (1, 1000):
                _report("in-proc", n, *await _propagation(n, Path(tmp)))
            for n in (1, 1000):
                _report("real CA", n, *await _real_ca(n, Path(tmp)))
        held, raw = await _memory(1000)
        print(
            f"memory at 1000 SVIDs: agent holds {held / 1024:8.0f} KiB"
            f" ({held / 1000 / 1024:5.1f} KiB per SVID); SVID bytes alone {raw / 1024:6.0f} KiB;"
            f" ratio {held / raw:5.2f}"
        )

    asyncio.run(run())


if __name__ == "__main__":
    main()
