"""The node agent on embedded defaults, beside the CA, for ``meshward up``.

The one place that needs both :mod:`ca` and :mod:`agent` (which never import
each other), so it sits in the top layer with the command that uses it.

The local node is ``spiffe://<td>/meshward/node/local``. On first start the
CA (in the same process) creates a join token for it, which the agent
redeems once; afterwards the stored node SVID is reused. So that the
Workload API has something to hand out, the example ``frontend`` workload
(``spiffe://<td>/ns/shop/sa/frontend``, the caller in the printed examples) is
delegated to the local node for the current user (``unix:uid:<uid>``), once.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from agent.ca_client import node_selector
from agent.run import AgentPlan, AgentServices, start_agent
from ca.service import Caller, CertificateAuthority
from ca.store.protocol import Entry
from meshward.settings import Settings, parse_hostport
from meshward.spiffe import SpiffeId

__all__ = ["EXAMPLE_PATH", "NODE_PATH", "start_embedded_agent"]

NODE_PATH = "/meshward/node/local"
EXAMPLE_PATH = "/ns/shop/sa/frontend"
_UP = Caller(address="up")


def _ca_url(settings: Settings) -> str:
    host, port = parse_hostport(settings.ca.addr)
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - reading the listen address, not binding
        host = "127.0.0.1"
    return f"https://{host}:{port}" if ":" not in host else f"https://[{host}]:{port}"


async def start_embedded_agent(
    settings: Settings, ca: CertificateAuthority, announce: Callable[[str], None]
) -> AgentServices:
    """Delegate the example entry (once), then start the agent against ``ca``."""
    td = ca.trust_domain
    node = SpiffeId(td, NODE_PATH)
    selector = node_selector(node)
    if not any(selector in e.selectors for e in ca.store.list_entries()):
        example = Entry(
            ca.new_entry_id(),
            SpiffeId(td, EXAMPLE_PATH),
            frozenset({selector, f"unix:uid:{os.getuid()}"}),
        )
        ca.add_entry(example, _UP)
    state = settings.state_dir / "agent"
    agent_settings = settings.agent.model_copy(update={"ca_url": _ca_url(settings)})
    plan = AgentPlan(
        settings=agent_settings,
        trust_domain=td,
        state_dir=state,
        socket=(agent_settings.socket or state / "api.sock").absolute(),
        sds_addr=(
            agent_settings.sds_addr
            if agent_settings.sds_addr is not None
            else f"unix:{(state / 'sds.sock').absolute()}"
        )
        or None,
        bootstrap_bundle=ca.authority.bundle().to_pem(),
    )
    token: str | None = None
    if not (state / "node.pem").exists():
        token = ca.create_join_token(node, 600, _UP)
    return await start_agent(plan, announce=announce, token=lambda: token)
