"""Wire the node agent from settings and run it until SIGTERM/SIGINT.

Signals: ``SIGUSR1`` renews every SVID now (a forced rotation); ``SIGHUP``
re-reads bundle and entries from the CA now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from grpclib.server import Server

from ca.agent.agent import AgentConfig, NodeAgent
from ca.agent.ca_client import CaClient
from ca.agent.errors import AgentError, CaRejected, CaUnavailable
from ca.agent.files import FileSink, FileSinkConfig
from ca.agent.hub import SnapshotHub
from ca.agent.sds import SdsService, parse_sds_address, serve_sds
from ca.agent.serving import Attestor, FixedAttestor, UnixAttestor
from ca.agent.workload_api import WorkloadApi, serve_workload_api
from meshward.callers import is_loopback_host
from meshward.clock import Clock, SystemClock
from meshward.settings import AgentSettings, Settings
from meshward.spiffe import InvalidSpiffeId, TrustDomain
from meshward.spiffe_bundle import InvalidBundle, load_bundle

__all__ = [
    "AgentPlan",
    "AgentServices",
    "AgentStartupError",
    "check_sds_listener",
    "plan_agent",
    "run_agent",
    "start_agent",
]

log = logging.getLogger("meshward.agent")


class AgentStartupError(AgentError):
    """The agent cannot start as configured (the message says why; exit code 2)."""

    code = "startup"


@dataclass(frozen=True)
class AgentPlan:
    """Everything the agent will do, resolved from settings (paths made concrete)."""

    settings: AgentSettings
    trust_domain: TrustDomain
    state_dir: Path
    socket: Path
    sds_addr: str | None
    bootstrap_bundle: bytes

    def token(self) -> str | None:
        """The attestation token, read anew each time (token files are rotated)."""
        agent = self.settings
        if agent.join_token is not None:
            return agent.join_token.get_secret_value().strip() or None
        if agent.token_file is not None:
            try:
                return agent.token_file.read_text(encoding="utf-8").strip() or None
            except OSError:
                log.warning(
                    "cannot read the token file", extra={"fields": {"path": str(agent.token_file)}}
                )
        return None


def plan_agent(settings: Settings) -> AgentPlan:
    agent = settings.agent
    try:
        td = TrustDomain.parse(agent.trust_domain or settings.ca.trust_domain)
    except InvalidSpiffeId as exc:
        raise AgentStartupError(f"invalid trust domain: {exc.reason}") from exc
    state = settings.state_dir / "agent"
    if agent.ca_bundle is None:
        raise AgentStartupError("--ca-bundle is required (the CA's bundle.pem)")
    try:
        bootstrap = agent.ca_bundle.read_bytes()
    except OSError as exc:
        raise AgentStartupError(f"cannot read CA bundle {agent.ca_bundle}") from exc
    try:
        # Either form `meshward ca bundle` prints: the JWK Set, or PEM (--pem).
        bootstrap = load_bundle(bootstrap, td).to_pem()
    except InvalidBundle as exc:
        raise AgentStartupError(f"{agent.ca_bundle} is not a trust bundle ({exc.reason})") from exc
    if not bootstrap:
        raise AgentStartupError(f"{agent.ca_bundle} holds no X.509 authority")
    sds = agent.sds_addr
    if sds is None:
        sds = f"unix:{(state / 'sds.sock').absolute()}"
    check_sds_listener(sds, agent.sds_selectors)
    if agent.write_signal and not agent.write_pid_file:
        raise AgentStartupError("--write-signal needs --write-pid-file")
    if agent.write_signal and agent.write_signal not in signal.Signals.__members__:
        raise AgentStartupError(f"unknown signal {agent.write_signal}")
    return AgentPlan(
        settings=agent,
        trust_domain=td,
        state_dir=state,
        socket=(agent.socket or state / "api.sock").absolute(),
        sds_addr=sds or None,
        bootstrap_bundle=bootstrap,
    )


def check_sds_listener(address: str, selectors: tuple[str, ...]) -> None:
    """Refuse an SDS listener that could not tell its callers apart.

    A Unix socket identifies each caller by its peer credentials, so
    ``--sds-selector`` has no place there. A TCP port cannot: it must be on
    loopback and name the selectors every caller is treated as having.
    """
    if not address:
        return
    try:
        path, host, _ = parse_sds_address(address)
    except ValueError as exc:
        raise AgentStartupError(str(exc)) from exc
    if path is not None:
        if selectors:
            raise AgentStartupError(
                "--sds-selector is for a loopback TCP SDS listener only; on a Unix socket "
                "each caller gets what its own credentials match"
            )
        return
    if host is None or not is_loopback_host(host):
        raise AgentStartupError(
            f"SDS on TCP must listen on a loopback address, not {host!r} (or use unix:/path)"
        )
    if not selectors:
        raise AgentStartupError(
            "SDS on TCP needs --sds-selector: a TCP caller has no credentials, so it is "
            "served exactly the entries those selectors match (or use unix:/path)"
        )


def _sds_attestor(address: str, selectors: tuple[str, ...]) -> Attestor:
    path, _, _ = parse_sds_address(address)
    return UnixAttestor() if path is not None else FixedAttestor(selectors)


@dataclass
class AgentServices:
    """A started agent: renewal loop, Workload API, SDS and file mode; :meth:`aclose` stops all."""

    plan: AgentPlan
    agent: NodeAgent
    client: CaClient
    api_server: Server
    sds_server: Server | None
    sink: FileSink | None

    async def aclose(self) -> None:
        await self.agent.stop()
        if self.sink is not None:
            await self.sink.stop()
        servers = [self.api_server] + ([self.sds_server] if self.sds_server else [])
        for server in servers:
            server.close()
        for server in servers:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2)
        await self.client.aclose()
        with contextlib.suppress(FileNotFoundError):
            self.plan.socket.unlink()


async def start_agent(
    plan: AgentPlan,
    clock: Clock | None = None,
    announce: Callable[[str], None] = print,
    token: Callable[[], str | None] | None = None,
) -> AgentServices:
    """Attest (or reuse the stored node SVID) and start every service of ``plan``.

    Raises :class:`AgentStartupError` when the CA refuses the agent; an
    unreachable CA is retried in the background.
    """
    clock = clock or SystemClock()
    cfg = plan.settings
    check_sds_listener(plan.sds_addr or "", cfg.sds_selectors)
    client = CaClient(
        cfg.ca_url, plan.trust_domain, plan.bootstrap_bundle, plan.state_dir, clock,
        token or plan.token,
    )  # fmt: skip
    try:
        await client.fetch_bundle()
    except CaRejected as exc:
        await client.aclose()
        raise AgentStartupError(f"the CA refused the agent ({exc.code})") from exc
    except CaUnavailable as exc:
        log.warning("CA not reachable yet; retrying", extra={"fields": {"code": exc.code}})

    hub = SnapshotHub()
    config = AgentConfig(
        sync_interval=cfg.sync_interval,
        jwt_rate_per_second=cfg.jwt_rate_per_second,
        jwt_rate_burst=cfg.jwt_rate_burst,
    )
    agent = NodeAgent(client, hub, clock, config=config)
    api_server = await serve_workload_api(
        WorkloadApi(agent),
        plan.socket,
        mode=0o660 if cfg.socket_group else 0o666,
        group=cfg.socket_group,
    )
    announce(f"workload API: unix:{plan.socket}")
    sds_server = None
    if plan.sds_addr:
        service = SdsService(hub, _sds_attestor(plan.sds_addr, cfg.sds_selectors))
        sds_server = await serve_sds(
            service,
            plan.sds_addr,
            socket_mode=0o660 if cfg.sds_socket_group else 0o666,
            group=cfg.sds_socket_group,
        )
        announce(f"SDS: {plan.sds_addr}")
    sink = None
    if cfg.write_dir is not None:
        sink = FileSink(
            hub,
            FileSinkConfig(
                cfg.write_dir,
                cfg.write_spiffe_id,
                tuple(shlex.split(cfg.write_command or "")),
                cfg.write_signal,
                cfg.write_pid_file,
            ),
        )
        await sink.start()
        announce(f"files: {cfg.write_dir}")
    await agent.start()
    return AgentServices(plan, agent, client, api_server, sds_server, sink)


async def run_agent(
    plan: AgentPlan, clock: Clock | None = None, announce: Callable[[str], None] = print
) -> None:
    """Run until cancelled or SIGTERM/SIGINT; raise :class:`AgentStartupError` on bad setup."""
    services = await start_agent(plan, clock, announce)
    agent = services.agent
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handlers = {
        signal.SIGTERM: stop.set,
        signal.SIGINT: stop.set,
        signal.SIGUSR1: agent.rotate_now,
        signal.SIGHUP: agent.wake,
    }
    for sig, handler in handlers.items():
        loop.add_signal_handler(sig, handler)
    try:
        await stop.wait()
    finally:
        for sig in handlers:
            loop.remove_signal_handler(sig)
        await services.aclose()
