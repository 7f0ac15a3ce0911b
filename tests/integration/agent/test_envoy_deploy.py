"""The Envoy configs under deploy/ get every secret they ask the agent for.

Each bootstrap is parsed into Envoy's own Bootstrap proto (xds-protos); every
SDS secret it fetches from the ``meshward_agent`` cluster is requested from the
agent's real SDS server with an xds-protos client, and must come back with the
right kind of secret. The socket Envoy dials is the one the DaemonSet serves.
"""

from __future__ import annotations

import asyncio
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from cryptography import x509
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc

from agent.hub import SnapshotHub
from agent.model import Entry
from agent.node import NodeAgent
from agent.sds import SECRET_TYPE_URL, SdsService, serve_sds
from meshward.clock import SystemClock
from meshward.spiffe import SpiffeId
from tests.support.as_uid import open_dir, run_as, sds_fetch
from tests.support.authority import LocalAuthority
from tests.support.cli import REPO
from tests.support.envoy_config import load_document, parse_bootstrap

ENVOY_FILES = sorted((REPO / "deploy" / "envoy").glob("*.yaml"))
DAEMONSET = REPO / "deploy" / "kubernetes" / "agent-daemonset.yaml"
AGENT_CLUSTER = "meshward_agent"
ENVOY_UID = 101


def _sds_names(node: Any) -> Iterator[str]:
    """Names of SDS secrets fetched from the agent's cluster, anywhere in the document."""
    if isinstance(node, dict):
        if "sds_config" in node and "name" in node:
            services = node["sds_config"].get("api_config_source", {}).get("grpc_services", [])
            if any(s.get("envoy_grpc", {}).get("cluster_name") == AGENT_CLUSTER for s in services):
                yield node["name"]
        for value in node.values():
            yield from _sds_names(value)
    elif isinstance(node, list):
        for value in node:
            yield from _sds_names(value)


def _daemonset_sds_path() -> str:
    docs = list(yaml.safe_load_all(DAEMONSET.read_text()))
    ds = next(d for d in docs if d and d.get("kind") == "DaemonSet")
    args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
    sds: str = next(a for a in args if a.startswith("--sds="))
    return sds.removeprefix("--sds=unix:")


SDS_FILES = [p for p in ENVOY_FILES if set(_sds_names(load_document(p)))]
FILE_MODE_FILES = [p for p in ENVOY_FILES if "watched_directory" in p.read_text()]


def _file_sources(node: Any) -> Iterator[tuple[str, str]]:
    """(filename, watched directory) of every TLS file Envoy reads and watches."""
    if isinstance(node, dict):
        watched = node.get("watched_directory", {}).get("path")
        for value in node.values():
            if isinstance(value, dict) and "filename" in value and watched:
                yield value["filename"], watched
            yield from _file_sources(value)
    elif isinstance(node, list):
        for value in node:
            yield from _file_sources(value)


def test_there_are_envoy_configs_using_the_agent() -> None:
    assert SDS_FILES and FILE_MODE_FILES


@pytest.mark.parametrize("path", FILE_MODE_FILES, ids=[p.name for p in FILE_MODE_FILES])
def test_file_mode_configs_read_what_the_agent_writes(path: Path) -> None:
    sources = list(_file_sources(load_document(path)))
    assert sources
    for filename, watched in sources:
        # The agent swaps ..data in this directory with a rename: the move
        # Envoy's watched_directory reacts to.
        assert Path(filename).parent == Path(watched)
        assert Path(filename).name in {"svid.pem", "svid_key.pem", "bundle.pem"}


@pytest.mark.parametrize("path", SDS_FILES, ids=[p.name for p in SDS_FILES])
async def test_agent_serves_every_secret_envoy_asks_for(path: Path, tmp_path_factory) -> None:
    document = load_document(path)
    bootstrap = parse_bootstrap(document)
    names = sorted(set(_sds_names(document)))
    assert names, f"{path.name} takes no secret from the agent"
    # Envoy dials the socket the DaemonSet serves SDS on.
    cluster = next(c for c in bootstrap.static_resources.clusters if c.name == AGENT_CLUSTER)
    pipe = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.pipe.path
    assert pipe == _daemonset_sds_path()

    svid_names = [n for n in names if SpiffeId.parse(n).path]
    td = SpiffeId.parse(names[0]).trust_domain.name
    authority = LocalAuthority(SystemClock(), trust_domain=td)
    authority.entries = [
        Entry(f"e{i}", SpiffeId.parse(n), frozenset({"unix:uid:101"}))
        for i, n in enumerate(svid_names)
    ]
    agent = NodeAgent(authority, SnapshotHub(), SystemClock(), random.Random(0))
    await agent.sync_once()
    sock_dir = open_dir()
    address = f"unix:{sock_dir / 'sds.sock'}"
    server = await serve_sds(SdsService(agent.hub), address, socket_mode=0o666)
    try:
        # Envoy runs as uid 101 (the official image's user) and gets what uid 101's entries name.
        as_envoy = await asyncio.to_thread(run_as, ENVOY_UID, ENVOY_UID, sds_fetch, address, names)
        # Another uid on the same socket: nothing.
        as_other = await asyncio.to_thread(run_as, 4242, 4242, sds_fetch, address, names)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = sds_pb2_grpc.SecretDiscoveryServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.FetchSecrets(
                    discovery_pb2.DiscoveryRequest(resource_names=names, type_url=SECRET_TYPE_URL)
                )
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        server.close()
        await server.wait_closed()
        shutil.rmtree(sock_dir, ignore_errors=True)
    assert as_other == {"error": "PERMISSION_DENIED"}
    secrets = as_envoy["secrets"]
    assert set(secrets) == set(names)
    for name, secret in secrets.items():
        if name in svid_names:
            chain = x509.load_pem_x509_certificates(secret["chain"].encode())
            san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName)
            assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [name]
        else:
            assert secret["trusted_ca"].encode() == authority.bundle().x509_pem
