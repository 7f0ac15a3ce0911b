"""A meshward CA for tests: in-process (FixedClock) or the real CLI server on loopback."""

from __future__ import annotations

import datetime as dt
import json
import signal
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ca.issuance import build_csr
from ca.keystore import PASSPHRASE_ENV
from ca.service import Caller, CertificateAuthority, init_authority, random_serial
from ca.state import CaFiles
from ca.store.protocol import Entry
from ca.store.sqlite import SqliteStore
from meshward.clock import FixedClock
from meshward.settings import CaSettings
from meshward.spiffe import SpiffeId, TrustDomain
from tests.support.cli import REPO, meshward, meshward_argv, meshward_env
from tests.support.net import free_port, wait_for_port

__all__ = [
    "PASSPHRASE",
    "ca_env",
    "CaProcess",
    "in_process_ca",
    "new_csr",
    "openssl_verify",
    "register",
    "running_ca",
]

PASSPHRASE = "test-passphrase-123"
TD = TrustDomain("example.org")


def in_process_ca(
    tmp_path: Path,
    clock: FixedClock | None = None,
    settings: CaSettings | None = None,
    persist: bool = False,
) -> CertificateAuthority:
    """A CertificateAuthority on a FixedClock, its store in ``tmp_path``."""
    clock = clock or FixedClock()
    settings = settings or CaSettings(trust_domain=TD.name, rate_burst=1000, rate_per_second=1000)
    authority = init_authority(
        TrustDomain(settings.trust_domain), settings, clock.now(), random_serial
    )
    files = CaFiles(tmp_path / "ca") if persist else None
    if files is not None:
        files.save(authority, PASSPHRASE.encode())
    return CertificateAuthority(
        authority,
        SqliteStore(tmp_path / "ca.db"),
        settings,
        clock,
        files=files,
        passphrase=PASSPHRASE.encode() if persist else None,
    )


def register(
    ca: CertificateAuthority, spiffe_id: SpiffeId, *selectors: str, **fields: Any
) -> Entry:
    """A live registration entry for ``spiffe_id`` (the CA renews only such IDs)."""
    entry = Entry(ca.new_entry_id(), spiffe_id, frozenset(selectors or ("k8s:ns:test",)), **fields)
    return ca.add_entry(entry, Caller(address="test"))


def new_csr(spiffe_id: SpiffeId | None = None) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    return build_csr(key, spiffe_id), key


def openssl_verify(
    bundle_pem: bytes, chain_pem: bytes, purpose: str, workdir: Path, at: dt.datetime | None = None
) -> subprocess.CompletedProcess[str]:
    """``openssl verify -purpose PURPOSE`` of a leaf-first chain against a bundle."""
    workdir.mkdir(parents=True, exist_ok=True)
    certs = x509.load_pem_x509_certificates(chain_pem)
    (workdir / "bundle.pem").write_bytes(bundle_pem)
    (workdir / "leaf.pem").write_bytes(certs[0].public_bytes(serialization.Encoding.PEM))
    (workdir / "untrusted.pem").write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs[1:])
    )
    args = ["openssl", "verify", "-CAfile", str(workdir / "bundle.pem"), "-purpose", purpose]
    if len(certs) > 1:
        args += ["-untrusted", str(workdir / "untrusted.pem")]
    if at is not None:
        args += ["-attime", str(int(at.timestamp()))]
    return subprocess.run(
        [*args, str(workdir / "leaf.pem")], capture_output=True, text=True, check=False
    )


@dataclass
class CaProcess:
    """``meshward ca serve`` in a subprocess, with the admin SVID from ``ca init``."""

    state_dir: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    serve_args: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def admin_dir(self) -> Path:
        return self.state_dir / "admin"

    def cli(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return meshward("--state-dir", str(self.state_dir), *args, env=self.env, **kw)

    def start(self) -> None:
        self.log = self.state_dir / f"serve-{self.port}.log"
        full_env = meshward_env(self.env)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                meshward_argv("--state-dir", str(self.state_dir), "--log-format", "json",
                              "ca", "serve", "--addr", f"127.0.0.1:{self.port}",
                              *self.serve_args),
                env=full_env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
            )  # fmt: skip
        try:
            wait_for_port(self.port, timeout=120, process=self.process)
        except (TimeoutError, RuntimeError):
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None

    def bundle_pem(self) -> bytes:
        return httpx.get(f"{self.url}/v1/bundle.pem", verify=self.ssl_context()).content

    def ssl_context(self, cert_dir: Path | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.admin_dir / "bundle.pem"))
        if cert_dir is not None:
            ctx.load_cert_chain(cert_dir / "svid.pem", cert_dir / "key.pem")
        return ctx

    def client(self, cert_dir: Path | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.ssl_context(cert_dir), timeout=30)

    def admin(self) -> httpx.Client:
        return self.client(self.admin_dir)

    def audit_lines(self) -> list[dict[str, Any]]:
        assert self.log is not None
        out = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("logger") == "meshward.ca.audit":
                    out.append(record)
        return out


def ca_env(**settings: str) -> dict[str, str]:
    """The environment of a test CA process: its keys' passphrase, then ``settings``."""
    return {PASSPHRASE_ENV: PASSPHRASE, **settings}


@contextmanager
def running_ca(
    state_dir: Path, trust_domain: str = "example.org", **env: str
) -> Iterator[CaProcess]:
    """``meshward ca init``, ``ca admin login``, then ``ca serve`` on a free port; stopped after."""
    proc = CaProcess(state_dir, env=ca_env(**env))
    result = proc.cli("ca", "init", "--trust-domain", trust_domain)
    if result.returncode != 0:
        raise RuntimeError(f"ca init failed: {result.stderr}")
    login = proc.cli("ca", "admin", "login")
    if login.returncode != 0:
        raise RuntimeError(f"ca admin login failed: {login.stderr}")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
