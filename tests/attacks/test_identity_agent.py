"""Attacks on the node agent's sockets: one row per hole, each must stay shut.

Driven through the agent's real Unix sockets and loopback ports with
py-spiffe, grpcio (the Workload API stubs py-spiffe ships, xds-protos for
SDS) and grpclib clients; callers of another uid are real child processes
that switched uid with ``os.setuid``. The first rows run the agent in this
process over an in-process signing authority (so the CA's behaviour can be
set: slow, refusing, evicting); the last ones run the real ``meshward ca
serve`` and ``meshward agent run``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc
from grpclib.client import Channel
from grpclib.protocol import H2Protocol
from spiffe import X509Source
from spiffe._proto import workload_pb2, workload_pb2_grpc
from spiffe.workloadapi.errors import X509SourceError

from agent.ca_client import node_selector
from agent.errors import CaRejected
from agent.hub import SnapshotHub
from agent.model import Entry, HeldSvid
from agent.node import AgentConfig, NodeAgent
from agent.sds import SECRET_TYPE_URL, SdsService, serve_sds
from agent.serving import FixedAttestor
from agent.source import JwtSvidToken
from agent.workload_api import WorkloadApi, serve_workload_api
from meshward.clock import SystemClock
from meshward.spiffe import SpiffeId
from tests.support.agent_process import AgentProcess, admin_post
from tests.support.as_uid import first_x509_response, open_dir, run_as, sds_fetch, workload_x509
from tests.support.authority import LocalAuthority
from tests.support.ca import CaProcess, running_ca
from tests.support.cli import meshward
from tests.support.net import free_port

TD = "spiffe://example.org"
WEB = "spiffe://example.org/web"
ENVOY = "spiffe://example.org/envoy"
PYTHON = "spiffe://example.org/python"
SLEEP = "spiffe://example.org/sleep"
ENVOY_UID = 101
OTHER_UID = 4242
PYTHON_EXE = os.path.realpath(sys.executable)
SLEEP_EXE = os.path.realpath(shutil.which("sleep") or "/bin/sleep")
METADATA = (("workload.spiffe.io", "true"),)


def entry(entry_id: str, spiffe_id: str, *selectors: str, ttl: int | None = None) -> Entry:
    return Entry(entry_id, SpiffeId.parse(spiffe_id), frozenset(selectors), ttl)


ENTRIES = [
    entry("web", WEB, "unix:uid:0"),
    entry("envoy", ENVOY, f"unix:uid:{ENVOY_UID}"),
    entry("python", PYTHON, "unix:uid:0", f"unix:path:{PYTHON_EXE}"),
    entry("sleep", SLEEP, "unix:uid:0", f"unix:path:{SLEEP_EXE}"),
]


class TestAuthority(LocalAuthority):
    """A LocalAuthority that can refuse JWT-SVIDs and that signs one request at a time."""

    __test__ = False

    def __init__(self, latency: float = 0.0, backdate: int = 30) -> None:
        super().__init__(SystemClock(), backdate=backdate)
        self.latency = latency
        self.jwt_status: int | None = None
        self._one_at_a_time = asyncio.Lock()
        self.jwt_signed = 0

    async def _busy(self) -> None:
        if self.latency:
            async with self._one_at_a_time:  # FIFO, like a CA at its capacity
                await asyncio.sleep(self.latency)

    async def sign_x509(self, entry: Entry, csr, current):
        await self._busy()
        return await super().sign_x509(entry, csr, current)

    async def sign_jwt(self, svid: HeldSvid, audience: Sequence[str]) -> JwtSvidToken:
        if self.jwt_status is not None:
            raise CaRejected("refused", self.jwt_status)
        await self._busy()
        self.jwt_signed += 1
        return await super().sign_jwt(svid, audience)


@dataclass
class Agent:
    authority: TestAuthority
    agent: NodeAgent
    api: str
    sds: str


@contextlib.asynccontextmanager
async def running(
    authority: TestAuthority, config: AgentConfig | None = None
) -> AsyncIterator[Agent]:
    """The agent with its Workload API and SDS on Unix sockets any uid can reach."""
    directory = open_dir()
    agent = NodeAgent(
        authority,
        SnapshotHub(),
        SystemClock(),
        random.Random(5),
        config or AgentConfig(sync_interval=0.2, backoff_base=0.05),
    )
    api = await serve_workload_api(WorkloadApi(agent), directory / "api.sock")
    sds = await serve_sds(SdsService(agent.hub), f"unix:{directory / 'sds.sock'}", 0o666)
    try:
        async with agent:
            await agent.wait_synced()
            yield Agent(
                authority, agent, f"unix:{directory / 'api.sock'}", f"unix:{directory / 'sds.sock'}"
            )
    finally:
        for server in (api, sds):
            server.close()
            await server.wait_closed()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def agent() -> AsyncIterator[Agent]:
    authority = TestAuthority()
    authority.entries = list(ENTRIES)
    async with running(authority) as running_agent:
        yield running_agent


async def grpc_code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value.code()


# -- SDS is bound to its caller ---------------------------------------------------------------


async def test_sds_over_a_unix_socket_as_another_uid_gets_nothing(agent: Agent) -> None:
    names = [ENVOY, WEB, TD, "default"]
    as_other = await asyncio.to_thread(run_as, OTHER_UID, OTHER_UID, sds_fetch, agent.sds, names)
    assert as_other == {"error": "PERMISSION_DENIED"}
    # Envoy's own uid gets its SVID and the bundle - never the key of uid 0's entry.
    as_envoy = await asyncio.to_thread(run_as, ENVOY_UID, ENVOY_UID, sds_fetch, agent.sds, names)
    assert set(as_envoy["secrets"]) == {ENVOY, TD, "default"}
    assert "trusted_ca" in as_envoy["secrets"][TD]
    # The Workload API holds the same line.
    other_api = await asyncio.to_thread(run_as, OTHER_UID, OTHER_UID, workload_x509, agent.api)
    assert other_api == {"error": "PERMISSION_DENIED"}


async def test_tcp_sds_is_refused_without_selectors_or_off_loopback(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(LocalAuthority(SystemClock()).bundle().x509_pem)
    base = ["--state-dir", str(tmp_path / "s"), "agent", "run", "--ca-bundle", str(bundle)]
    base += ["--trust-domain", "example.org", "--ca-url", "https://127.0.0.1:9"]
    cases = {
        "selector": ["--sds", "127.0.0.1:18999"],
        "loopback": ["--sds", "0.0.0.0:18999", "--sds-selector", "unix:uid:101"],
        "Unix socket": ["--sds", f"unix:{tmp_path / 'sds.sock'}", "--sds-selector", "unix:uid:1"],
    }
    for needle, args in cases.items():
        result = await asyncio.to_thread(meshward, *base, *args, timeout=60)
        assert result.returncode == 2, result.stderr
        assert needle in result.stderr
        assert not (tmp_path / "s" / "agent" / "api.sock").exists()


async def test_tcp_sds_serves_exactly_its_selectors(agent: Agent) -> None:
    address = f"127.0.0.1:{free_port()}"
    server = await serve_sds(
        SdsService(agent.agent.hub, FixedAttestor({f"unix:uid:{ENVOY_UID}"})), address
    )
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = sds_pb2_grpc.SecretDiscoveryServiceStub(channel)
            response = await stub.FetchSecrets(
                discovery_pb2.DiscoveryRequest(
                    resource_names=[WEB, ENVOY], type_url=SECRET_TYPE_URL
                )
            )
        assert len(response.resources) == 1  # ENVOY only; root's WEB is not served over TCP
    finally:
        server.close()
        await server.wait_closed()


# -- the peer is pinned when it connects -----------------------------------------------------

CHILD = """
import os, socket, sys
ctl = socket.socket(fileno=int(sys.argv[2]))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
socket.send_fds(ctl, [b"c"], [s.fileno()])
step = ctl.recv(1)
if step == b"e":
    os.execv(sys.argv[3], [sys.argv[3], "30"])
"""


class _FdChannel(Channel):
    """A grpclib channel over a socket someone else connected (received with SCM_RIGHTS)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(path="/nonexistent")
        self._sock = sock

    async def _create_connection(self) -> H2Protocol:
        _, protocol = await self._loop.create_unix_connection(
            self._protocol_factory, sock=self._sock
        )
        return protocol


@contextlib.asynccontextmanager
async def handed_over(
    api: str,
) -> AsyncIterator[tuple[subprocess.Popen[bytes], socket.socket, socket.socket]]:
    """A child connects to ``api`` and hands us the connected socket; it waits for a word."""
    ours, theirs = socket.socketpair()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, api.removeprefix("unix:"), str(theirs.fileno()), SLEEP_EXE],
        pass_fds=[theirs.fileno()],
    )
    theirs.close()
    try:
        _, fds, _, _ = await asyncio.to_thread(socket.recv_fds, ours, 1, 1)
        yield child, socket.socket(fileno=fds[0]), ours
    finally:
        child.kill()
        child.wait(timeout=10)
        ours.close()


async def _wait_exe(pid: int, exe: str) -> None:
    for _ in range(200):
        with contextlib.suppress(OSError):
            if os.path.realpath(f"/proc/{pid}/exe") == exe:
                return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{pid} never ran {exe}")


async def test_exec_after_connect_gets_permission_denied(agent: Agent) -> None:
    async with handed_over(agent.api) as (child, sock, ctl):
        channel = _FdChannel(sock)
        try:
            # Before the exec the pinned peer is the child (python): its entries.
            before = await first_x509_response(channel)
            assert PYTHON in before["spiffe_ids"] and SLEEP not in before["spiffe_ids"]
            ctl.send(b"e")  # now exec the program entitled to SLEEP
            await _wait_exe(child.pid, SLEEP_EXE)
            after = await first_x509_response(channel)
        finally:
            channel.close()
    # /proc now says "sleep", but it is not the process that connected.
    assert after == {"error": "PERMISSION_DENIED"}


async def test_a_peer_that_exited_gets_permission_denied(agent: Agent) -> None:
    async with handed_over(agent.api) as (child, sock, ctl):
        ctl.send(b"x")  # exit
        await asyncio.to_thread(child.wait, 10)
        channel = _FdChannel(sock)
        try:
            result = await first_x509_response(channel)
        finally:
            channel.close()
    assert result == {"error": "PERMISSION_DENIED"}


# -- bounded messages --------------------------------------------------------------------------


async def test_oversize_messages_are_refused_on_both_sockets(agent: Agent) -> None:
    huge = "a" * (5 * 1024 * 1024)
    async with grpc.aio.insecure_channel(agent.api) as channel:
        stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
        code = await grpc_code(
            stub.FetchJWTSVID(workload_pb2.JWTSVIDRequest(audience=[huge]), metadata=METADATA)
        )
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Still serving, on the same socket.
        ok = await stub.FetchJWTSVID(
            workload_pb2.JWTSVIDRequest(audience=["orders"]), metadata=METADATA
        )
        assert ok.svids
    async with grpc.aio.insecure_channel(agent.sds) as channel:
        stub = sds_pb2_grpc.SecretDiscoveryServiceStub(channel)
        code = await grpc_code(
            stub.FetchSecrets(discovery_pb2.DiscoveryRequest(resource_names=[huge]))
        )
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert agent.authority.jwt_signed == len(ok.svids)


# -- fairness ----------------------------------------------------------------------------------


async def test_a_jwt_flood_does_not_delay_another_workloads_rotation() -> None:
    # A CA that signs one request at a time, 20 ms each; "rot" (uid 0) lives
    # 6 s, so it is due at most 3 s after issuance. Meanwhile 300 FetchJWTSVID
    # with distinct audiences (6 s of CA time) - with no per-workload rate
    # limit in the way, so only the queuing is under test.
    authority = TestAuthority(latency=0.02, backdate=0)
    authority.entries = [entry("rot", "spiffe://example.org/rot", "unix:uid:0", ttl=6), ENTRIES[0]]
    config = AgentConfig(sync_interval=30, jwt_rate_per_second=1000, jwt_rate_burst=1000)
    async with running(authority, config) as agent:
        rot = agent.agent.hub.current.svid_by_id("spiffe://example.org/rot")
        assert rot is not None
        due_by = time.time() + 3.0

        async with grpc.aio.insecure_channel(agent.api) as channel:
            stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
            flood = [
                asyncio.ensure_future(
                    stub.FetchJWTSVID(
                        workload_pb2.JWTSVIDRequest(audience=[f"aud-{i}"], spiffe_id=WEB),
                        metadata=METADATA,
                    )
                )
                for i in range(300)
            ]
            landed = None
            while landed is None and time.time() < due_by + 5:
                now = agent.agent.hub.current.svid_by_id("spiffe://example.org/rot")
                if now is not None and now.serial != rot.serial:
                    landed = time.time()
                await asyncio.sleep(0.01)
            signed_when_rotated = authority.jwt_signed
            for call in flood:
                call.cancel()
            await asyncio.gather(*flood, return_exceptions=True)
    assert landed is not None, "the rotation never landed"
    lateness = landed - due_by
    print(f"rotation lateness under a 300-audience flood: {lateness:+.2f} s")
    assert lateness < 1.0  # a single FIFO queue: about 2 s late
    assert signed_when_rotated < 300  # the flood was still going on


async def test_a_workload_over_its_jwt_rate_is_refused() -> None:
    authority = TestAuthority()
    authority.entries = [ENTRIES[0]]
    config = AgentConfig(sync_interval=30, jwt_rate_per_second=1, jwt_rate_burst=5)
    codes = []
    async with running(authority, config) as agent, grpc.aio.insecure_channel(agent.api) as channel:
        stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
        for i in range(8):
            try:
                await stub.FetchJWTSVID(
                    workload_pb2.JWTSVIDRequest(audience=[f"a{i}"]), metadata=METADATA
                )
                codes.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as exc:
                codes.append(exc.code())
    assert codes[:5] == [grpc.StatusCode.OK] * 5
    assert set(codes[5:]) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert authority.jwt_signed == 5


# -- refusals and revocation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, grpc.StatusCode.INVALID_ARGUMENT),
        (403, grpc.StatusCode.PERMISSION_DENIED),
        (404, grpc.StatusCode.PERMISSION_DENIED),
        (None, grpc.StatusCode.UNAVAILABLE),
    ],
)
async def test_ca_refusals_reach_the_workload_with_their_meaning(
    agent: Agent, status: int | None, expected: grpc.StatusCode
) -> None:
    if status is None:
        agent.authority.down = True
    agent.authority.jwt_status = status
    async with grpc.aio.insecure_channel(agent.api) as channel:
        stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
        code = await grpc_code(
            stub.FetchJWTSVID(workload_pb2.JWTSVIDRequest(audience=["x"]), metadata=METADATA)
        )
    assert code == expected


async def test_a_deleted_entry_is_dropped_from_streams_and_fetches(agent: Agent) -> None:
    async with grpc.aio.insecure_channel(agent.api) as channel:
        stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
        stream = stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=METADATA)
        first = await stream.read()
        assert {s.spiffe_id for s in first.svids} == {WEB, PYTHON}
        agent.authority.entries = [e for e in ENTRIES if e.entry_id != "python"]
        update = await asyncio.wait_for(stream.read(), 5)  # next sync: 0.2 s
        assert [s.spiffe_id for s in update.svids] == [WEB]
        agent.authority.entries = [e for e in ENTRIES if e.entry_id not in ("python", "web")]
        assert await asyncio.wait_for(grpc_code(stream.read()), 5) in (
            grpc.StatusCode.PERMISSION_DENIED,
        )
        code = await grpc_code(
            stub.FetchJWTSVID(workload_pb2.JWTSVIDRequest(audience=["x"]), metadata=METADATA)
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED


async def test_an_evicted_agent_stops_serving(agent: Agent) -> None:
    async with (
        grpc.aio.insecure_channel(agent.api) as api,
        grpc.aio.insecure_channel(agent.sds) as sds,
    ):
        stream = workload_pb2_grpc.SpiffeWorkloadAPIStub(api).FetchX509SVID(
            workload_pb2.X509SVIDRequest(), metadata=METADATA
        )
        assert (await stream.read()).svids

        async def requests() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
            yield discovery_pb2.DiscoveryRequest(resource_names=[WEB], type_url=SECRET_TYPE_URL)
            await asyncio.sleep(30)

        secrets = sds_pb2_grpc.SecretDiscoveryServiceStub(sds).StreamSecrets(requests())
        assert (await secrets.read()).resources
        agent.authority.evicted = True  # the CA answers 403 to the agent from now on
        assert await asyncio.wait_for(grpc_code(stream.read()), 5) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        assert await asyncio.wait_for(grpc_code(secrets.read()), 5) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        fetched = sds_pb2_grpc.SecretDiscoveryServiceStub(sds).FetchSecrets(
            discovery_pb2.DiscoveryRequest(resource_names=[WEB])
        )
        assert await grpc_code(fetched) == grpc.StatusCode.PERMISSION_DENIED
    assert agent.agent.refused is not None and agent.agent.refused.status == 403
    # py-spiffe sees no identity either.
    with pytest.raises(X509SourceError):
        await asyncio.to_thread(X509Source, socket_path=agent.api, timeout_in_seconds=2)


# -- with the real CA and the real agent -------------------------------------------------------

NODE = SpiffeId.parse("spiffe://example.org/node/attacks")


@pytest.fixture(scope="module")
def real_ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CaProcess]:
    with running_ca(
        tmp_path_factory.mktemp("ca"),
        MESHWARD_CA__RATE_BURST="500",
        MESHWARD_CA__RATE_PER_SECOND="500",
        MESHWARD_CA__X509_SVID_MIN_TTL="60",  # the short-TTL row asks for exactly that
    ) as proc:
        yield proc


def add_entry(ca: CaProcess, spiffe_id: str, node: SpiffeId, **extra: object) -> str:
    body = {"spiffe_id": spiffe_id, "selectors": [node_selector(node), "unix:uid:0"], **extra}
    resp = admin_post(ca, "/v1/entries", body)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


@contextlib.contextmanager
def real_agent(
    ca: CaProcess, workdir: Path, node: SpiffeId, sync_interval: float
) -> Iterator[AgentProcess]:
    resp = admin_post(ca, "/v1/join-tokens", {"spiffe_id": str(node), "ttl": 600})
    assert resp.status_code == 201, resp.text
    proc = AgentProcess(ca, workdir, resp.json()["token"], sync_interval=sync_interval)
    proc.start()
    try:
        yield proc
    finally:
        assert proc.stop() == 0


def issuances(ca: CaProcess, spiffe_id: str) -> int:
    return sum(
        1
        for line in ca.audit_lines()
        if line.get("action") == "x509_svid"
        and line.get("result") == "ok"
        and line.get("spiffe_id") == spiffe_id
    )


async def test_a_short_ttl_is_renewed_at_half_life_not_in_a_loop(
    real_ca: CaProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # 60 s SVIDs with notBefore backdated 60 s: counted from notBefore, the
    # half-life is already past at issuance (the agent issued 57 in 8 s).
    node = SpiffeId.parse("spiffe://example.org/node/short")
    spiffe_id = "spiffe://example.org/short-lived"
    add_entry(real_ca, spiffe_id, node, x509_ttl=60)
    with real_agent(real_ca, tmp_path_factory.mktemp("ag"), node, 0.5) as agent:
        first = await asyncio.to_thread(workload_x509, agent.endpoint)
        assert spiffe_id in first["spiffe_ids"]
        await asyncio.sleep(4)  # eight syncs
        count = issuances(real_ca, spiffe_id)
    print(f"issuances of a 60 s SVID in 4 s: {count}")
    assert count == 1


async def test_rotate_activate_moves_workloads_within_one_sync(
    real_ca: CaProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A sync interval long next to the pass itself (two key pairs, two CA
    # calls: up to ~2.5 s on a loaded machine), so that slack stays below a
    # second sync interval.
    sync = 3.0
    node = SpiffeId.parse("spiffe://example.org/node/rotate")
    for name in ("rot-a", "rot-b"):
        add_entry(real_ca, f"spiffe://example.org/{name}", node)
    with real_agent(real_ca, tmp_path_factory.mktemp("ag"), node, sync) as agent:
        source = await asyncio.to_thread(
            X509Source, socket_path=agent.endpoint, timeout_in_seconds=30
        )
        try:

            def issuers() -> set[bytes]:
                return {s.leaf.issuer.public_bytes() for s in source.get_x509_context().x509_svids}

            before = issuers()
            assert len(before) == 1
            resp = admin_post(real_ca, "/v1/ca/rotate/prepare")
            assert resp.status_code == 200, resp.text
            await asyncio.sleep(2 * sync)  # the next CA is published, not yet signing
            assert issuers() == before
            resp = admin_post(real_ca, "/v1/ca/rotate/activate")
            assert resp.status_code == 200, resp.text
            activated = time.monotonic()
            while issuers() == before or len(issuers()) != 1:
                assert time.monotonic() - activated < 20, "workloads stayed on the old CA"
                await asyncio.sleep(0.05)
            took = time.monotonic() - activated
        finally:
            await asyncio.to_thread(source.close)
    print(f"every SVID on the new signing CA {took:.2f} s after activate (sync {sync} s)")
    assert took <= sync + 2.5  # one sync, plus the pass itself


async def test_a_deleted_entry_leaves_the_workload_within_one_sync(
    real_ca: CaProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    sync = 1.0
    node = SpiffeId.parse("spiffe://example.org/node/revoke")
    keep = "spiffe://example.org/revoke-keep"
    drop = "spiffe://example.org/revoke-drop"
    keep_id = add_entry(real_ca, keep, node)
    drop_id = add_entry(real_ca, drop, node)
    with real_agent(real_ca, tmp_path_factory.mktemp("ag"), node, sync) as agent:
        async with grpc.aio.insecure_channel(agent.endpoint) as channel:
            stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
            stream = stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=METADATA)
            first = await stream.read()
            assert {s.spiffe_id for s in first.svids} == {keep, drop}, first
            with real_ca.admin() as admin:
                assert admin.delete(f"/v1/entries/{drop_id}").status_code == 204
            deleted = time.monotonic()
            update = await asyncio.wait_for(stream.read(), sync + 5)
            dropped_after = time.monotonic() - deleted
            assert [s.spiffe_id for s in update.svids] == [keep], update
            # The last entry: the stream ends, fetches are refused.
            with real_ca.admin() as admin:
                assert admin.delete(f"/v1/entries/{keep_id}").status_code == 204
            code = await asyncio.wait_for(grpc_code(stream.read()), sync + 5)
            assert code == grpc.StatusCode.PERMISSION_DENIED
            code = await grpc_code(
                stub.FetchJWTSVID(workload_pb2.JWTSVIDRequest(audience=["x"]), metadata=METADATA)
            )
            assert code == grpc.StatusCode.PERMISSION_DENIED
    print(f"deleted entry gone from the Workload API after {dropped_after:.2f} s (sync {sync} s)")
    assert dropped_after <= sync + 2.0, dropped_after  # the next sync, plus slack for load


async def test_an_evicted_node_stops_serving_its_workloads(
    real_ca: CaProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    sync = 1.0
    node = SpiffeId.parse("spiffe://example.org/node/evicted")
    spiffe_id = "spiffe://example.org/on-evicted-node"
    add_entry(real_ca, spiffe_id, node)
    with real_agent(real_ca, tmp_path_factory.mktemp("ag"), node, sync) as agent:
        sds = f"unix:{agent.workdir / 'sds.sock'}"
        async with grpc.aio.insecure_channel(agent.endpoint) as channel:
            stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
            stream = stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=METADATA)
            assert [s.spiffe_id for s in (await stream.read()).svids] == [spiffe_id]
            assert "secrets" in await asyncio.to_thread(sds_fetch, sds, [spiffe_id])
            resp = admin_post(real_ca, "/v1/agents/evict", {"spiffe_id": str(node)})
            assert resp.status_code == 200, resp.text
            evicted = time.monotonic()
            code = await asyncio.wait_for(grpc_code(stream.read()), sync + 5)
            stopped_after = time.monotonic() - evicted
            assert code == grpc.StatusCode.PERMISSION_DENIED
            code = await grpc_code(
                stub.FetchJWTSVID(workload_pb2.JWTSVIDRequest(audience=["x"]), metadata=METADATA)
            )
            assert code == grpc.StatusCode.PERMISSION_DENIED
        assert await asyncio.to_thread(sds_fetch, sds, [spiffe_id]) == {
            "error": "PERMISSION_DENIED"
        }
        log = (agent.workdir / "agent.log").read_text()
        assert "the CA refuses this agent" in log
        assert agent.process is not None and agent.process.poll() is None  # still running
    print(f"evicted node's workload lost its SVID after {stopped_after:.2f} s (sync {sync} s)")
    assert stopped_after <= sync + 2.0, stopped_after  # the next sync, plus slack for load


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_a_64_mib_request_does_not_grow_the_agent(
    real_ca: CaProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Before the limit, a 256 MiB FetchJWTSVID took the agent from 126 MB to 1.3 GB.
    node = SpiffeId.parse("spiffe://example.org/node/memory")
    add_entry(real_ca, "spiffe://example.org/memory", node)
    with real_agent(real_ca, tmp_path_factory.mktemp("ag"), node, 5.0) as agent:
        assert agent.process is not None
        await asyncio.to_thread(workload_x509, agent.endpoint)  # warmed up
        before = _rss_kib(agent.process.pid)
        huge = "a" * (64 * 1024 * 1024)
        async with grpc.aio.insecure_channel(agent.endpoint) as channel:
            stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
            code = await grpc_code(
                stub.FetchJWTSVID(workload_pb2.JWTSVIDRequest(audience=[huge]), metadata=METADATA)
            )
        del huge
        after = _rss_kib(agent.process.pid)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Still serving.
        assert "spiffe_ids" in await asyncio.to_thread(workload_x509, agent.endpoint)
    print(f"agent RSS {before / 1024:.0f} MiB -> {after / 1024:.0f} MiB after a 64 MiB request")
    assert after - before < 16 * 1024
