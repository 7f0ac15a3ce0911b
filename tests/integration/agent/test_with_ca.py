"""End to end: the real ``meshward ca serve`` and the real ``meshward agent run``.

The agent attests with a join token, gets SVIDs for the entries delegated to
its node, and serves them to py-spiffe over the Workload API, to an
xds-protos SDS client, and as files. Then: a forced rotation (SIGUSR1), a CA
key rotation, a CA outage and its return, an agent restart without a token.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from spiffe import JwtBundle, JwtSvid, WorkloadApiClient, X509Source
from spiffe import TrustDomain as PyTrustDomain

from ca.agent.ca_client import node_selector
from meshward.spiffe import SpiffeId
from tests.support.agent_process import AgentProcess, admin_post
from tests.support.ca import CaProcess, new_csr, openssl_verify, running_ca
from tests.support.wait import eventually_async

NODE = SpiffeId.parse("spiffe://example.org/node/n1")
APP = "spiffe://example.org/app"
UID = os.getuid()


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaProcess]:
    with running_ca(
        tmp_path_factory.mktemp("ca"),
        MESHWARD_CA__ROTATE_CHECK_SECONDS="0.3",
        MESHWARD_CA__RATE_BURST="200",
        MESHWARD_CA__RATE_PER_SECOND="200",
    ) as proc:
        for spiffe_id, selectors in (
            (APP, [node_selector(NODE), f"unix:uid:{UID}"]),
            ("spiffe://example.org/other-uid", [node_selector(NODE), "unix:uid:4242"]),
            ("spiffe://example.org/other-node", ["agent:id:spiffe://example.org/node/n2"]),
        ):
            resp = admin_post(proc, "/v1/entries", {"spiffe_id": spiffe_id, "selectors": selectors})
            assert resp.status_code == 201, resp.text
        yield proc


@pytest.fixture(scope="module")
def agent(ca: CaProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    resp = admin_post(ca, "/v1/join-tokens", {"spiffe_id": str(NODE), "ttl": 600})
    assert resp.status_code == 201, resp.text
    proc = AgentProcess(ca, tmp_path_factory.mktemp("ag"), resp.json()["token"])
    proc.start()
    yield proc
    assert proc.stop() == 0
    assert not proc.socket.exists()


def _serial(endpoint: str) -> int:
    with WorkloadApiClient(endpoint) as client:
        return int(client.fetch_x509_context().default_svid.leaf.serial_number)


async def _wait_change(source: X509Source, before: int, timeout: float = 30) -> int:
    def changed() -> int | None:
        now = source.get_x509_context().default_svid.leaf.serial_number
        return int(now) if now != before else None

    return await eventually_async(changed, timeout, 0.05, "a new SVID on the stream")


async def test_workload_gets_its_svid_and_a_jwt(agent: AgentProcess, ca: CaProcess) -> None:
    def fetch() -> tuple[list[str], bytes, str, str]:
        with WorkloadApiClient(agent.endpoint) as client:
            ctx = client.fetch_x509_context()
            chain = b"".join(
                c.public_bytes(serialization.Encoding.PEM) for c in ctx.default_svid.cert_chain
            )
            token = client.fetch_jwt_svid({"orders"})
            checked = client.validate_jwt_svid(token.token, "orders")
            return (
                [str(s.spiffe_id) for s in ctx.x509_svids],
                chain,
                token.token,
                str(checked.spiffe_id),
            )

    ids, chain, token, validated = await asyncio.to_thread(fetch)
    # Only the entry for this uid; not the other uid's, not the other node's.
    assert ids == [APP]
    assert openssl_verify(ca.bundle_pem(), chain, "sslclient", agent.workdir / "v").returncode == 0
    assert validated == APP
    # Independently: py-spiffe validates the JWT with the CA's own JWT keys.
    with ca.client() as client:
        doc = client.get("/v1/bundle").json()
    jwt_keys = {"keys": [k for k in doc["keys"] if k["use"] == "jwt-svid"]}
    bundle = JwtBundle.parse(PyTrustDomain("example.org"), json.dumps(jwt_keys).encode())
    assert str(JwtSvid.parse_and_validate(token, bundle, {"orders"}).spiffe_id) == APP
    # File mode wrote the same identity.
    cert = x509.load_pem_x509_certificates((agent.files / "svid.pem").read_bytes())[0]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [APP]


async def test_forced_and_ca_rotations_reach_an_open_stream(
    agent: AgentProcess, ca: CaProcess
) -> None:
    source = await asyncio.to_thread(X509Source, socket_path=agent.endpoint, timeout_in_seconds=30)
    try:
        first = source.get_x509_context().default_svid.leaf.serial_number
        agent.signal(signal.SIGUSR1)  # forced rotation
        second = await _wait_change(source, first)
        # A CA rotation: prepare publishes the next signing CA, activate makes it
        # sign; the agent moves the workload onto it.
        issuer = source.get_x509_context().default_svid.leaf.issuer
        for step in ("prepare", "activate"):
            resp = admin_post(ca, f"/v1/ca/rotate/{step}")
            assert resp.status_code == 200, resp.text
        await _wait_change(source, second)
        await eventually_async(
            lambda: source.get_x509_context().default_svid.leaf.issuer != issuer,
            10,
            0.05,
            "the SVID to leave the old signing CA",
        )
        td = PyTrustDomain("example.org")
        bundle = source.get_x509_context().x509_bundle_set.get_bundle_for_trust_domain(td)
        assert bundle is not None
        served = {c.public_bytes(serialization.Encoding.PEM) for c in bundle.x509_authorities}
        published = set(
            c.public_bytes(serialization.Encoding.PEM)
            for c in x509.load_pem_x509_certificates(ca.bundle_pem())
        )
        assert served == published
    finally:
        await asyncio.to_thread(source.close)


async def test_ca_outage_then_recovery(agent: AgentProcess, ca: CaProcess) -> None:
    held = await asyncio.to_thread(_serial, agent.endpoint)
    ca.stop()
    try:
        agent.signal(signal.SIGUSR1)  # renewal due while the CA is down
        await asyncio.sleep(1.5)
        assert agent.process is not None and agent.process.poll() is None
        assert await asyncio.to_thread(_serial, agent.endpoint) == held  # still served
    finally:
        ca.start()
    # Back: the agent's retries renew by themselves (no signal needed).

    async def renewed() -> bool:
        return await asyncio.to_thread(_serial, agent.endpoint) != held

    await eventually_async(renewed, 60, 0.2, "a renewal after the CA came back")


async def test_restart_reuses_the_node_svid(agent: AgentProcess) -> None:
    assert (agent.workdir / "state" / "agent" / "node.pem").stat().st_mode & 0o077 == 0
    assert agent.stop() == 0
    agent.token = None  # the join token is spent; the stored node SVID suffices
    agent.start()
    assert await asyncio.to_thread(_serial, agent.endpoint) > 0


def test_a_used_join_token_is_refused_at_start(ca: CaProcess, tmp_path: Path) -> None:
    resp = admin_post(ca, "/v1/join-tokens", {"spiffe_id": "spiffe://example.org/node/n3"})
    token = resp.json()["token"]
    with ca.client() as client:
        csr, _ = new_csr()
        assert client.post("/v1/svid/x509", json={"csr": csr.decode(), "token": token}).is_success
    proc = AgentProcess(ca, tmp_path, token)
    with pytest.raises(RuntimeError):
        proc.start()
    assert proc.process is not None and proc.process.wait(timeout=10) == 2


def test_agent_attests_with_a_kubernetes_token(tmp_path: Path) -> None:
    key = rsa.generate_private_key(65537, 2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", use="sig", alg="RS256")
    jwks = tmp_path / "cluster-jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    now = int(dt.datetime.now(dt.UTC).timestamp())
    token = jwt.encode(
        {
            "iss": "https://kubernetes.default.svc.cluster.local",
            "aud": ["meshward"],
            "sub": "system:serviceaccount:meshward:meshward-agent",
            "iat": now,
            "exp": now + 600,
            "kubernetes.io": {
                "namespace": "meshward",
                "serviceaccount": {"name": "meshward-agent"},
            },
        },
        key,
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    agent_id = SpiffeId.parse("spiffe://example.org/meshward/agent")
    with running_ca(tmp_path / "ca", MESHWARD_CA__K8S_JWKS_FILE=str(jwks)) as ca:
        for spiffe_id, selectors in (
            (str(agent_id), ["k8s:ns:meshward", "k8s:sa:meshward-agent"]),
            (APP, [node_selector(agent_id), f"unix:uid:{UID}"]),
        ):
            resp = admin_post(ca, "/v1/entries", {"spiffe_id": spiffe_id, "selectors": selectors})
            assert resp.status_code == 201, resp.text
        token_file = tmp_path / "token"
        token_file.write_text(token)
        # The bootstrap bundle in its JWK Set form this time (`meshward ca bundle`).
        jwks = tmp_path / "bundle.json"
        with ca.client() as client:
            jwks.write_bytes(client.get("/v1/bundle").content)
        proc = AgentProcess(ca, tmp_path / "ag", None, token_file=token_file, bundle=jwks)
        proc.workdir.mkdir()
        proc.start()
        try:
            with WorkloadApiClient(proc.endpoint) as client:
                svid = client.fetch_x509_context().default_svid
            assert str(svid.spiffe_id) == APP
        finally:
            assert proc.stop() == 0
