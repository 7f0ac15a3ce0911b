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

Then the same h2load load on ``ca serve --workers 2`` (processes sharing the
port), and on two replicas of one CA on a throw-away PostgreSQL (half the
connections each). The machine is shared: it prints the load average, and
the ratios are what compare across runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

from bench._harness import free_port
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


def _h2load_rate(ports: list[int], body: Path) -> tuple[float, str]:
    """h2load (HTTP/1.1 keep-alive) on every port at once, CLIENTS connections in all."""
    if shutil.which("h2load") is None:
        return 0.0, "h2load not installed"
    per_port = max(1, CLIENTS // len(ports))
    runs = [
        subprocess.Popen(
            [
                "h2load",
                "--h1",
                "-D",
                str(int(SECONDS)),
                "-c",
                str(per_port),
                "-m",
                "1",
                "-d",
                str(body),
                "-H",
                "content-type: application/json",
                f"https://127.0.0.1:{port}/v1/svid/x509",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for port in ports
    ]
    total, ok, bad = 0.0, 0, 0
    for run in runs:
        out = run.communicate()[0]
        rate = re.search(r"finished in [^,]+, ([\d.]+) req/s", out)
        status = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
        total += float(rate.group(1)) if rate else 0.0
        if status:
            ok += int(status.group(1))
            bad += int(status.group(3)) + int(status.group(4))
    return total, f"{ok} 2xx, {bad} 4xx/5xx"


def main() -> None:
    load_before = _load()
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
        ctx = ssl.create_default_context(cafile=str(state / "bundle.pem"))
        ctx.load_cert_chain(state / "svid.pem", state / "key.pem")
        body = state / "body.json"
        body.write_text(json.dumps({"csr": csrs[0].decode(), "token": sa_token}))
        ca.store.close()

        with _servers(state, env, [()], ctx) as ports:
            h2_rate, h2_codes = _h2load_rate(ports, body)
            text = [c.decode() for c in csrs]
            api_rate, errors = asyncio.run(_api_rate(f"https://127.0.0.1:{ports[0]}", ctx, text))
        with _servers(state, env, [("--workers", "2")], ctx) as ports:
            workers_rate, workers_codes = _h2load_rate(ports, body)
        replicas_rate, replicas_codes = _replicas_rate(state, env, body)

    best = max(h2_rate, api_rate)
    sign_share = (1 / core_rate) * best
    store_share = max(0.0, (1 / service_rate - 1 / core_rate)) * best
    print(f"load before: {load_before}; after: {_load()} (2 cores shared: compare ratios)")
    print(f"issuance core in-process (ceiling):  {core_rate:8.0f} X.509-SVIDs/s")
    print(f"CA service in-process (+audit row):  {service_rate:8.0f} X.509-SVIDs/s")
    print(f"HTTPS API, h2load, {CLIENTS} connections: {h2_rate:8.0f} X.509-SVIDs/s ({h2_codes})")
    print(f"HTTPS API, Python mTLS clients:      {api_rate:8.0f} X.509-SVIDs/s ({errors} errors)")
    print(
        f"HTTPS API, --workers 2, h2load:      {workers_rate:8.0f} X.509-SVIDs/s ({workers_codes})"
    )
    print(
        f"two replicas on PostgreSQL, h2load:  {replicas_rate:8.0f} X.509-SVIDs/s"
        f" ({replicas_codes})"
    )
    print(f"ratio API (h2load) / ceiling:        {h2_rate / core_rate:8.2f}")
    print(f"ratio API (Python clients) / ceiling:{api_rate / core_rate:8.2f}")
    print(f"ratio --workers 2 / ceiling:         {workers_rate / core_rate:8.2f}")
    print(f"ratio two replicas (PostgreSQL) / ceiling: {replicas_rate / core_rate:8.2f}")
    print(
        f"time per API issuance: signing {sign_share:.0%}, store+audit {store_share:.0%},"
        f" HTTP/TLS/JSON {max(0.0, 1 - sign_share - store_share):.0%}"
    )


def _load() -> str:
    one, five, _fifteen = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


@contextlib.contextmanager
def _servers(
    state: Path, env: dict[str, str], args: list[tuple[str, ...]], ctx: ssl.SSLContext
) -> Iterator[list[int]]:
    """``ca serve`` once per entry of ``args`` (extra options), each on its own port.

    On a shared database each is a replica, named after its port.
    """
    ports = [free_port() for _ in args]
    procs = []
    stack = contextlib.ExitStack()
    try:
        for port, extra in zip(ports, args, strict=True):
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "meshward",
                        "--state-dir",
                        str(state),
                        "ca",
                        "serve",
                        "--addr",
                        f"127.0.0.1:{port}",
                        *extra,
                    ],
                    env={**env, "MESHWARD_CA__REPLICA_ID": f"bench{port}"},
                    stdout=stack.enter_context((state / f"serve-{port}.log").open("wb")),
                    stderr=subprocess.STDOUT,
                )
            )
        for port in ports:
            _wait_ready(port, ctx, state)
        yield ports
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        stack.close()


def _wait_ready(port: int, ctx: ssl.SSLContext, state: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"https://127.0.0.1:{port}/healthz", verify=ctx, timeout=2)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                logs = "".join(p.read_text() for p in state.glob("serve-*.log"))
                raise RuntimeError(f"ca serve did not start:\n{logs[-2000:]}") from None
            time.sleep(0.2)


def _replicas_rate(state: Path, env: dict[str, str], body: Path) -> tuple[float, str]:
    """Two replicas of a new CA on a throw-away PostgreSQL, h2load on both at once."""
    from bench._postgres import PG_BIN, postgres_server  # noqa: PLC0415

    if not (PG_BIN / "initdb").exists():
        return 0.0, "PostgreSQL not installed"
    with postgres_server() as pg:
        url = pg.create_database()
        pg_state = state / "pg"
        pg_env = {**env, "MESHWARD_CA__DATABASE_URL": url}
        cli = [sys.executable, "-m", "meshward", "--state-dir", str(pg_state), "ca"]
        for args in (
            ["init", "--trust-domain", "bench.local"],
            ["entry", "add", "--spiffe-id", str(WORKLOAD),
             "--selector", "k8s:ns:bench", "--selector", "k8s:sa:bench"],
            ["admin", "login"],
        ):  # fmt: skip
            subprocess.run([*cli, *args], env=pg_env, check=True, capture_output=True)
        ctx = ssl.create_default_context(cafile=str(pg_state / "admin" / "bundle.pem"))
        with _servers(pg_state, pg_env, [(), ()], ctx) as ports:
            return _h2load_rate(ports, body)


if __name__ == "__main__":
    main()
