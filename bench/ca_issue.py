"""CA issuance throughput: X.509-SVIDs/s over the HTTPS API vs the in-process ceiling.

Measured side by side in one run, on the same machine:

1. the issuance core in-process, one thread (parse CSR, build, sign,
   self-check) — the ceiling;
2. the CA service in-process (adds attestation, the store and the audit row);
3. ``meshward ca serve`` (real process, TLS, JSON): one process, then
   ``--workers 2`` (processes sharing the port), then two replicas of one CA
   on a throw-away PostgreSQL (half the connections each).

The load comes from other processes, never from this one: ``h2load`` (C,
HTTP/1.1, CLIENTS keep-alive connections, each sending its next request as
soon as the answer arrives, one reusable Kubernetes service-account token as
the credential) and ``bench/_renew_client.py`` (CLIENTS keep-alive mTLS
connections renewing with a client SVID, as agents do; h2load cannot present
a client certificate). The clients share the two cores with the server: their
CPU is printed, and the API figures are lower bounds.

The machine is shared, so the ceiling and each API figure are measured in
ROUNDS interleaved rounds (ceiling, then the API, then the ceiling again…);
each ratio is an API rate over the ceiling of its own round, and the median
and the spread (min-max) are printed. Then the two targets of issue 14 —
≥ 1,000 X.509-SVIDs/s over HTTPS on 2 cores, and ≥ 0.6 of the in-process
ceiling — with the best configuration's figures.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import resource
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
TARGET_RATE = 1000.0
TARGET_RATIO = 0.6
WORKLOAD = SpiffeId.parse("spiffe://bench.local/workload")


def _csrs(n: int) -> list[bytes]:
    return [build_csr(ec.generate_private_key(ec.SECP256R1())) for _ in range(n)]


def _rate(func: Callable[[bytes], object], csrs: list[bytes]) -> tuple[float, float]:
    """Calls per second of ``func``, and the CPU seconds one call took (this thread's)."""
    count, start, cpu = 0, time.perf_counter(), time.thread_time()
    while time.perf_counter() - start < SECONDS:
        func(csrs[count % len(csrs)])
        count += 1
    return count / (time.perf_counter() - start), (time.thread_time() - cpu) / count


def _tree_cpu(pids: list[int]) -> float:
    """CPU seconds used so far by ``pids`` and their descendants (Linux /proc)."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
                stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])))
    tick = os.sysconf("SC_CLK_TCK")
    wanted, total, grew = set(pids), 0.0, True
    while grew:
        grew = False
        for pid, (ppid, _cpu) in stats.items():
            if ppid in wanted and pid not in wanted:
                wanted.add(pid)
                grew = True
    for pid in wanted:
        if pid in stats:
            total += stats[pid][1] / tick
    return total


def _renew_rate(port: int, state: Path) -> tuple[float, str]:
    """mTLS renewals from ``bench/_renew_client.py`` in its own process."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench._renew_client",
            f"https://127.0.0.1:{port}",
            str(state / "bundle.pem"),
            str(state / "svid.pem"),
            str(state / "key.pem"),
            str(state / "csrs.json"),
            str(CLIENTS),
            str(SECONDS),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    out = json.loads(done.stdout)
    return out["ok"] / out["seconds"], f"{out['errors']} errors"


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


@dataclass
class Figure:
    """One API configuration measured over the rounds: rates, ratios to their round's ceiling."""

    name: str
    rates: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # server CPU seconds per issuance

    def add(self, rate: float, note: str, ceiling: float, cpu: float) -> None:
        self.rates.append(rate)
        self.ratios.append(rate / ceiling if ceiling else 0.0)
        self.notes.append(note)
        if rate:
            self.cpu.append(cpu / (rate * SECONDS))

    @property
    def cpu_per_issuance(self) -> float:
        return statistics.median(self.cpu) if self.cpu else 0.0

    @property
    def rate(self) -> float:
        return statistics.median(self.rates) if self.rates else 0.0

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios) if self.ratios else 0.0

    def line(self) -> str:
        if not self.rates:
            return f"{self.name:44s} not measured ({'; '.join(self.notes)})"
        return (
            f"{self.name:44s} {self.rate:6.0f}/s ({_spread(self.rates, '.0f')});"
            f" ratio {self.ratio:.2f} ({_spread(self.ratios, '.2f')});"
            f" server CPU {self.cpu_per_issuance * 1e6:.0f} us/issuance; {self.notes[-1]}"
        )


def _spread(values: list[float], fmt: str) -> str:
    return f"{min(values):{fmt}}-{max(values):{fmt}}"


class Rounds:
    """Interleaves the ceiling with the API runs and keeps the clients' CPU time."""

    def __init__(self, core: Callable[[bytes], object], csrs: list[bytes]) -> None:
        self.core, self.csrs = core, csrs
        self.ceilings: list[float] = []
        self.core_cpu: list[float] = []
        self.client_cpu = 0.0
        self.client_wall = 0.0

    def ceiling(self) -> float:
        rate, cpu = _rate(self.core, self.csrs)
        self.ceilings.append(rate)
        self.core_cpu.append(cpu)
        return rate

    def measure(
        self, figure: Figure, run: Callable[[], tuple[float, str]], servers: list[int]
    ) -> None:
        for _ in range(ROUNDS):
            ceiling = self.ceiling()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            server_cpu = _tree_cpu(servers)
            start = time.perf_counter()
            rate, note = run()
            server_cpu = _tree_cpu(servers) - server_cpu
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            self.client_wall += time.perf_counter() - start
            self.client_cpu += (after.ru_utime - before.ru_utime) + (
                after.ru_stime - before.ru_stime
            )
            figure.add(rate, note, ceiling, server_cpu)


def main() -> None:
    load_before = _load()
    clock = SystemClock()
    settings = CaSettings(trust_domain="bench.local", rate_per_second=1e9, rate_burst=10**9)
    csrs = _csrs(256)
    h2_one, renew_one = (
        Figure("HTTPS, 1 process, h2load:"),
        Figure("HTTPS, 1 process, mTLS renewals:"),
    )
    h2_two = Figure("HTTPS, --workers 2, h2load:")
    renew_two = Figure("HTTPS, --workers 2, mTLS renewals:")
    replicas = Figure("HTTPS, 2 replicas on PostgreSQL, h2load:")
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

        rounds = Rounds(core, csrs)
        service_rate, service_cpu = _rate(service, csrs)

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
        (state / "csrs.json").write_text(json.dumps([c.decode() for c in csrs[:32]]))
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

        pids: list[int] = []
        with _servers(state, env, [()], ctx, pids) as ports:
            rounds.measure(h2_one, lambda: _h2load_rate(ports, body), pids)
            rounds.measure(renew_one, lambda: _renew_rate(ports[0], state), pids)
        pids = []
        with _servers(state, env, [("--workers", "2")], ctx, pids) as ports:
            rounds.measure(h2_two, lambda: _h2load_rate(ports, body), pids)
            rounds.measure(renew_two, lambda: _renew_rate(ports[0], state), pids)
        _replicas(state, env, body, rounds, replicas)

    ceiling = statistics.median(rounds.ceilings)
    core_cpu = statistics.median(rounds.core_cpu)
    figures = [h2_one, renew_one, h2_two, renew_two, replicas]
    print(f"load before: {load_before}; after: {_load()} (2 cores shared: compare ratios)")
    print(
        f"clients: h2load and bench/_renew_client.py, each its own process, {CLIENTS} keep-alive"
        f" connections; they used {rounds.client_cpu / max(rounds.client_wall, 1e-9):.2f}"
        " CPU-seconds per second of load (of the 2 cores)"
    )
    print(
        f"issuance core in-process, 1 thread (ceiling): {ceiling:6.0f}/s"
        f" ({_spread(rounds.ceilings, '.0f')} over {len(rounds.ceilings)} runs);"
        f" CPU {core_cpu * 1e6:.0f} us/issuance"
    )
    print(
        f"CA service in-process (+attest, store, audit): {service_rate:6.0f}/s;"
        f" CPU {service_cpu * 1e6:.0f} us/issuance"
    )
    print(f"{ROUNDS} rounds of {SECONDS:g} s; median (min-max); ratio = rate / its round's ceiling")
    for figure in figures:
        print(figure.line())
    api_cpu = renew_one.cpu_per_issuance
    if api_cpu:
        sign, store = core_cpu / api_cpu, max(0.0, service_cpu - core_cpu) / api_cpu
        print(
            f"server CPU per API issuance (1 process, mTLS renewal): signing {sign:.0%},"
            f" attestation+store+audit {store:.0%}, HTTP/TLS/JSON {max(0.0, 1 - sign - store):.0%}"
        )
    if h2_two.cpu_per_issuance:
        print(
            "projection, not a measurement: 2 cores of their own would give --workers 2"
            f" about {2 / h2_two.cpu_per_issuance:.0f}/s (h2load) and"
            f" {2 / max(renew_two.cpu_per_issuance, 1e-9):.0f}/s (renewals), before the"
            " clients' own CPU"
        )
    fastest = max(figures, key=lambda f: f.rate)
    closest = max(figures, key=lambda f: f.ratio)
    print(
        f"target >= {TARGET_RATE:,.0f} X.509-SVIDs/s over HTTPS on 2 cores:"
        f" {fastest.rate:.0f}/s median ({fastest.name.rstrip(':')})"
        f" - {'met' if fastest.rate >= TARGET_RATE else 'NOT met'}"
    )
    print(
        f"target >= {TARGET_RATIO} of the in-process ceiling:"
        f" {closest.ratio:.2f} median ({closest.name.rstrip(':')})"
        f" - {'met' if closest.ratio >= TARGET_RATIO else 'NOT met'}"
        " (the ceiling is one thread on one core; --workers 2 runs on both)"
    )


def _load() -> str:
    one, five, _fifteen = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


@contextlib.contextmanager
def _servers(
    state: Path,
    env: dict[str, str],
    args: list[tuple[str, ...]],
    ctx: ssl.SSLContext,
    pids: list[int] | None = None,
) -> Iterator[list[int]]:
    """``ca serve`` once per entry of ``args`` (extra options), each on its own port.

    On a shared database each is a replica, named after its port. ``pids``, if
    given, receives the processes' ids.
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
        if pids is not None:
            pids.extend(p.pid for p in procs)
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


def _replicas(state: Path, env: dict[str, str], body: Path, rounds: Rounds, figure: Figure) -> None:
    """Two replicas of a new CA on a throw-away PostgreSQL, h2load on both at once."""
    from bench._postgres import PG_BIN, postgres_server  # noqa: PLC0415

    if not (PG_BIN / "initdb").exists():
        figure.notes.append("PostgreSQL not installed")
        return
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
        pids: list[int] = []
        with _servers(pg_state, pg_env, [(), ()], ctx, pids) as ports:
            rounds.measure(figure, lambda: _h2load_rate(ports, body), pids)


if __name__ == "__main__":
    main()
