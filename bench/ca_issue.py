"""CA issuance throughput: X.509-SVIDs/s over the HTTPS API vs the in-process ceiling.

Measured side by side in one run, on the same machine:

1. the issuance core in-process (parse CSR, build, sign, self-check) — the ceiling;
2. the CA service in-process (adds the SQLite audit row and the rate limiter);
3. ``meshward ca serve`` (real process, TLS, mTLS renewal requests, JSON) driven
   by concurrent asyncio clients, each on its own keep-alive connection.

It prints the rates, the API/ceiling ratio, and where an API issuance spends
its time: signing (core), store/audit, and HTTP/TLS/JSON (the rest). The client
runs on the same cores as the server, so the API figure is a lower bound.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ca.issuance import build_csr, issue_x509_svid, parse_csr
from ca.service import Caller, CertificateAuthority, init_authority, random_serial
from ca.state import CaFiles
from ca.store.sqlite import SqliteStore
from meshward.clock import SystemClock
from meshward.settings import CaSettings
from meshward.spiffe import SpiffeId, TrustDomain

REPO = Path(__file__).resolve().parents[1]
PASSPHRASE = "bench-passphrase-123"
SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "16"))
WORKLOAD = SpiffeId.parse("spiffe://bench.local/workload")


def _csrs(n: int) -> list[bytes]:
    return [build_csr(ec.generate_private_key(ec.SECP256R1())) for _ in range(n)]


def _rate(func: Callable[[bytes], object], csrs: list[bytes]) -> float:
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < SECONDS:
        func(csrs[count % len(csrs)])
        count += 1
    return count / (time.perf_counter() - start)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _api_rate(url: str, ctx: ssl.SSLContext, csrs: list[str]) -> tuple[float, int]:
    stop = time.perf_counter() + SECONDS
    done = 0
    errors = 0

    async def worker(i: int) -> None:
        nonlocal done, errors
        async with httpx.AsyncClient(base_url=url, verify=ctx, timeout=30) as client:
            n = i
            while time.perf_counter() < stop:
                resp = await client.post("/v1/svid/x509", json={"csr": csrs[n % len(csrs)]})
                n += CLIENTS
                if resp.status_code == 200:
                    done += 1
                else:
                    errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(CLIENTS)))
    return done / (time.perf_counter() - start), errors


def main() -> None:
    clock = SystemClock()
    settings = CaSettings(trust_domain="bench.local", rate_per_second=1e9, rate_burst=10**9)
    csrs = _csrs(256)
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        authority = init_authority(TrustDomain("bench.local"), settings, clock.now(), random_serial)
        files = CaFiles(state / "ca")
        files.save(authority, PASSPHRASE.encode())
        ca = CertificateAuthority(authority, SqliteStore(files.db), settings, clock)

        def core(csr: bytes) -> None:
            issue_x509_svid(
                parse_csr(csr), WORKLOAD, authority.active, authority.chain(), clock.now(),
                dt.timedelta(hours=1), random_serial,
            )  # fmt: skip

        def service(csr: bytes) -> None:
            ca.issue_x509(csr, None, Caller(peer_id=WORKLOAD))

        core_rate = _rate(core, csrs)
        service_rate = _rate(service, csrs)

        # The real server, and a client SVID for mTLS renewal requests.
        key = ec.generate_private_key(ec.SECP256R1())
        issued = ca.issue_x509_local(WORKLOAD, build_csr(key), 3600)
        (state / "svid.pem").write_bytes(
            b"".join(c.public_bytes(serialization.Encoding.PEM) for c in issued.chain)
        )
        (state / "key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        (state / "bundle.pem").write_bytes(authority.bundle().to_pem())
        port = _free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MESHWARD_")},
            "PYTHONPATH": str(REPO),
            "MESHWARD_CA_PASSPHRASE": PASSPHRASE,
            "MESHWARD_CA__TRUST_DOMAIN": "bench.local",
            "MESHWARD_CA__RATE_PER_SECOND": "1000000000",
            "MESHWARD_CA__RATE_BURST": "1000000000",
            "MESHWARD_LOG_LEVEL": "warning",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "meshward", "--state-dir", str(state), "ca", "serve",
             "--addr", f"127.0.0.1:{port}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            ctx = ssl.create_default_context(cafile=str(state / "bundle.pem"))
            ctx.load_cert_chain(state / "svid.pem", state / "key.pem")
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"https://127.0.0.1:{port}/healthz", verify=ctx, timeout=2)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            text = [c.decode() for c in csrs]
            api_rate, errors = asyncio.run(_api_rate(f"https://127.0.0.1:{port}", ctx, text))
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()

    per_api = 1 / api_rate
    sign_share = (1 / core_rate) / per_api
    store_share = max(0.0, (1 / service_rate - 1 / core_rate)) / per_api
    print(f"issuance core in-process (ceiling): {core_rate:8.0f} X.509-SVIDs/s")
    print(f"CA service in-process (+audit row): {service_rate:8.0f} X.509-SVIDs/s")
    print(
        f"HTTPS API, {CLIENTS} concurrent clients:  {api_rate:8.0f} X.509-SVIDs/s ({errors} errors)"
    )
    print(f"ratio API / ceiling:                {api_rate / core_rate:8.2f}")
    print(
        f"time per API issuance: signing {sign_share:.0%}, store+audit {store_share:.0%},"
        f" HTTP/TLS/JSON {max(0.0, 1 - sign_share - store_share):.0%}"
    )


if __name__ == "__main__":
    main()
