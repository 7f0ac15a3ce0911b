"""A real ``meshward pdp serve`` process on free loopback ports, with its own PKI and keys."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from meshward.spiffe import TrustDomain
from meshward.spiffe_bundle import SpiffeBundle
from tests.support.certs import TestPki, url_encoded_pem
from tests.support.cli import REPO, meshward_argv, meshward_env
from tests.support.net import free_port, wait_for_port
from tests.support.tokens import SigningKey
from tests.support.wait import eventually

__all__ = ["ISSUER", "PdpProcess", "TRUST_DOMAIN", "pdp_process"]

TRUST_DOMAIN = "meshward.local"
ISSUER = "https://id.meshward.local"  # the issuer the example policies name


@dataclass
class PdpProcess:
    """Where a running PDP listens, and the credentials its trust configuration accepts."""

    workdir: Path
    pki: TestPki
    svid_key: SigningKey
    idp_key: SigningKey
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None
    _certificates: dict[str, str] = field(default_factory=dict)

    @property
    def grpc_addr(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def peer_certificate(self, spiffe_id: str) -> str:
        """An X.509-SVID chain for ``spiffe_id``, valid now, URL-encoded as Envoy sends it."""
        if spiffe_id not in self._certificates:
            prefix = f"spiffe://{TRUST_DOMAIN}"
            if not spiffe_id.startswith(prefix + "/"):
                raise ValueError(f"not a SPIFFE ID of {TRUST_DOMAIN}: {spiffe_id}")
            now = dt.datetime.now(dt.UTC)
            leaf = self.pki.leaf(
                path=spiffe_id[len(prefix) :],
                not_before=now - dt.timedelta(minutes=5),
                not_after=now + dt.timedelta(hours=1),
            )
            self._certificates[spiffe_id] = url_encoded_pem(*self.pki.chain(leaf))
        return self._certificates[spiffe_id]

    def output(self) -> str:
        log = self.workdir / "pdp.log"
        return log.read_text() if log.exists() else ""


def _write_config(pdp: PdpProcess, extra: dict[str, Any]) -> Path:
    bundle = SpiffeBundle(
        TrustDomain(TRUST_DOMAIN),
        (pdp.pki.root.cert,),
        {pdp.svid_key.kid: pdp.svid_key.private.public_key()},
    )
    bundle_path = pdp.workdir / "bundle.json"
    bundle_path.write_bytes(bundle.to_json())
    jwks_path = pdp.workdir / "idp-jwks.json"
    jwks_path.write_text(json.dumps({"keys": [pdp.idp_key.jwk]}))
    # ``extra`` adds [pdp] settings or replaces these defaults.
    values: dict[str, Any] = {
        "trusted_proxies": ["127.0.0.1/32"],
        "trust_peer_principal": True,
        **extra,
    }
    lines = ["[pdp]"]
    for key, value in values.items():
        lines.append(f"{key} = {json.dumps(value)}")
    lines += [
        "",
        "[[pdp.oidc_issuers]]",
        f'issuer = "{ISSUER}"',
        'audiences = ["shop"]',
        f'jwks_file = "{jwks_path}"',
        'algorithms = ["RS256"]',
    ]
    config = pdp.workdir / "meshward.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


@contextmanager
def pdp_process(
    workdir: Path,
    *args: str,
    policies: Path | str = REPO / "policies",
    pdp_settings: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
    before_start: Callable[[PdpProcess], None] | None = None,
) -> Iterator[PdpProcess]:
    """Start ``meshward pdp serve`` and wait until ``/readyz`` says ready
    (or, without ``wait_ready``, only until its HTTP port is open).
    ``before_start`` is called with the ports and credentials chosen, before
    the process starts (a client that must see the port open)."""
    workdir.mkdir(parents=True, exist_ok=True)
    pdp = PdpProcess(
        workdir, TestPki(TRUST_DOMAIN), SigningKey("svid-key-1"), SigningKey("idp-1", "rsa")
    )
    config = _write_config(pdp, pdp_settings or {})
    env = meshward_env(env)
    argv = meshward_argv(
        "--config", str(config),
        "--state-dir", str(workdir / "state"),
        "pdp", "serve",
        "--policies", str(policies),
        "--grpc-addr", pdp.grpc_addr,
        "--http-addr", f"127.0.0.1:{pdp.http_port}",
        "--trust-bundle", str(workdir / "bundle.json"),
        *args,
    )  # fmt: skip
    if before_start is not None:
        before_start(pdp)
    with (workdir / "pdp.log").open("w") as log:
        pdp.process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO
        )
    try:
        wait_for_port(pdp.http_port, timeout=120, process=pdp.process)
        if wait_ready:

            def ready() -> bool:
                try:
                    return httpx.get(f"{pdp.http_url}/readyz", timeout=10).status_code == 200
                except httpx.TransportError:  # a loaded machine: slow to answer
                    return False

            eventually(ready, 60, 0.1, "the PDP ready", pdp.output)
        yield pdp
    finally:
        if pdp.process.poll() is None:
            pdp.process.send_signal(signal.SIGTERM)
            try:
                pdp.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pdp.process.kill()
                pdp.process.wait(timeout=10)
