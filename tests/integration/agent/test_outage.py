"""The CA goes away: the agent keeps serving; it renews again when the CA returns."""

from __future__ import annotations

import asyncio

from spiffe import WorkloadApiClient, X509Source

from agent.errors import CaUnavailable
from tests.integration.agent.conftest import RunningAgent
from tests.support.wait import eventually_async


async def test_serving_through_an_outage_and_recovering(running_agent: RunningAgent) -> None:
    source = await asyncio.to_thread(
        X509Source, socket_path=running_agent.endpoint, timeout_in_seconds=10
    )
    try:
        first = source.get_x509_context().default_svid.leaf.serial_number
        running_agent.authority.down = True
        running_agent.agent.rotate_now()  # renewal due, CA unreachable
        await eventually_async(
            lambda: isinstance(running_agent.agent.last_error, CaUnavailable),
            message="the renewal failing on the unreachable CA",
        )

        # New clients still get the held SVID; the open stream still has it.
        def fetch() -> int:
            with WorkloadApiClient(running_agent.endpoint) as client:
                return client.fetch_x509_context().default_svid.leaf.serial_number

        assert await asyncio.to_thread(fetch) == first
        assert source.get_x509_context().default_svid.leaf.serial_number == first

        running_agent.authority.down = False  # the CA is back: the retry renews
        await eventually_async(
            lambda: source.get_x509_context().default_svid.leaf.serial_number != first,
            message="the SVID renewed once the CA is back",
        )
        assert running_agent.agent.last_error is None
    finally:
        await asyncio.to_thread(source.close)
