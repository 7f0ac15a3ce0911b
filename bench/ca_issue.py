"""CA issuance throughput: X.509-SVIDs/s over the HTTPS API vs the in-process ceiling.

Measured side by side in one run, on the same machine:

1. the issuance core in-process (parse CSR, build, sign, self-check) — the ceiling;
2. the CA service in-process (adds the SQLite audit row and the rate limiter);
3. ``meshward ca serve`` (real process, TLS, JSON) under load from ``h2load``
   (HTTP/1.1, keep-alive, concurrent clients, one reusable Kubernetes
   service-account token as the credential), so the load generator costs
   little CPU; and, for comparison, from Python asyncio clients renewing over
   mTLS (client and server share the same cores, so that figure is lower).

It prints the rates, the API/ceiling ratio, and where an API issuance spends
its time: signing (core), store/audit, and HTTP/TLS/JSON (the rest). The client
runs on the same cores as the server, so the API figure is a lower bound.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import shutil
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
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

from ca.issuance import build_csr, issue_x509_svid, parse_csr
from ca.service import Caller, CertificateAuthority, init_authority, random_serial
from ca.state import CaFiles
from ca.store.protocol import Entry
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


def _k8s_setup(state: Path) -> tuple[Path, str]:
    """A cluster JWKS and one service-account token valid for the whole run."""
    key = rsa.generate_private_key(65537, 2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="bench", alg="RS256", use="sig")
    path = state / "cluster-jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    now = int(time.time())
    claims = {
        "iss": "https://kubernetes.default.svc.cluster.local",
        "aud": ["meshward"],
        "sub": "system:serviceaccount:bench:bench",
        "iat": now,
        "exp": now + 3600,
        "kubernetes.io": {"namespace": "bench", "serviceaccount": {"name": "bench"}},
    }
    return path, jwt.encode(claims, key, algorithm="RS256", headers={"kid": "bench"})


def _h2load_rate(port: int, body: Path) -> tuple[float, str]:
    if shutil.which("h2load") is None:
        return 0.0, "h2load not installed"
    out = subprocess.run(
        ["h2load", "--h1", "-D", str(int(SECONDS)), "-c", str(CLIENTS), "-m", "1",
         "-d", str(body), "-H", "content-type: application/json",
         f"https://127.0.0.1:{port}/v1/svid/x509"],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    rate = re.search(r"finished in [^,]+, ([\d.]+) req/s", out)
    status = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    codes = (
        f"{status.group(1)} 2xx, {status.group(3)} 4xx, {status.group(4)} 5xx" if status else "?"
    )
    return (float(rate.group(1)) if rate else 0.0), codes


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
        jwks, sa_token = _k8s_setup(state)
        ca.add_entry(
            Entry("bench", WORKLOAD, frozenset({"k8s:ns:bench", "k8s:sa:bench"})),
            Caller(address="bench"),
        )

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
            "MESHWARD_CA__K8S_JWKS_FILE": str(jwks),
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
            body = state / "body.json"
            body.write_text(json.dumps({"csr": csrs[0].decode(), "token": sa_token}))
            h2_rate, h2_codes = _h2load_rate(port, body)
            text = [c.decode() for c in csrs]
            api_rate, errors = asyncio.run(_api_rate(f"https://127.0.0.1:{port}", ctx, text))
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()

    best = max(h2_rate, api_rate)
    sign_share = (1 / core_rate) * best
    store_share = max(0.0, (1 / service_rate - 1 / core_rate)) * best
    print(f"issuance core in-process (ceiling):  {core_rate:8.0f} X.509-SVIDs/s")
    print(f"CA service in-process (+audit row):  {service_rate:8.0f} X.509-SVIDs/s")
    print(f"HTTPS API, h2load, {CLIENTS} connections: {h2_rate:8.0f} X.509-SVIDs/s ({h2_codes})")
    print(f"HTTPS API, Python mTLS clients:      {api_rate:8.0f} X.509-SVIDs/s ({errors} errors)")
    print(f"ratio API (h2load) / ceiling:        {h2_rate / core_rate:8.2f}")
    print(f"ratio API (Python clients) / ceiling:{api_rate / core_rate:8.2f}")
    print(
        f"time per API issuance: signing {sign_share:.0%}, store+audit {store_share:.0%},"
        f" HTTP/TLS/JSON {max(0.0, 1 - sign_share - store_share):.0%}"
    )


if __name__ == "__main__":
    main()
