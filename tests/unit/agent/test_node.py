"""The renewal loop against an in-process authority, time driven by a FixedClock."""

from __future__ import annotations

import asyncio
import datetime as dt
import random

import pytest

from agent.errors import CaRejected, CaUnavailable
from agent.hub import SnapshotHub
from agent.model import Entry
from agent.node import AgentConfig, NodeAgent
from agent.workload_api import status_for
from meshward.clock import FixedClock
from meshward.spiffe import SpiffeId
from tests.support.authority import LocalAuthority
from tests.support.wait import eventually_async


def entry(name: str, *selectors: str, ttl: int | None = None) -> Entry:
    return Entry(name, SpiffeId.parse(f"spiffe://example.org/{name}"), frozenset(selectors), ttl)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(dt.datetime(2026, 4, 1, tzinfo=dt.UTC))


@pytest.fixture
def authority(clock: FixedClock) -> LocalAuthority:
    a = LocalAuthority(clock, ttl=3600)
    a.entries = [entry("web", "unix:uid:1"), entry("db", "unix:uid:2")]
    return a


@pytest.fixture
def agent(authority: LocalAuthority, clock: FixedClock) -> NodeAgent:
    return NodeAgent(authority, SnapshotHub(), clock, random.Random(1), AgentConfig(jitter=0.1))


def serials(agent: NodeAgent) -> dict[str, int]:
    return {str(s.spiffe_id): s.serial for s in agent.hub.current.svids}


async def test_first_pass_issues_every_entry(agent: NodeAgent) -> None:
    assert await agent.sync_once()
    assert set(serials(agent)) == {"spiffe://example.org/web", "spiffe://example.org/db"}
    assert agent.hub.current.bundle is not None


async def test_renews_at_half_life_not_before(
    agent: NodeAgent, clock: FixedClock, authority: LocalAuthority
) -> None:
    await agent.sync_once()
    first = serials(agent)
    # The leaf is backdated 30 s, but renewal counts from issuance: the real
    # window is 3,600 s, half-life at +1,800 s, jitter up to 360 s earlier.
    # At +1,400 s nothing is due yet; at +1,785 s everything is.
    clock.advance(1400)
    assert not await agent.sync_once()
    assert serials(agent) == first
    clock.advance(385)
    assert await agent.sync_once()
    after = serials(agent)
    assert all(after[k] != first[k] for k in first)
    assert authority.issued == 4


async def test_bundle_change_renews_everything(agent: NodeAgent, authority: LocalAuthority) -> None:
    await agent.sync_once()
    first = serials(agent)
    authority.rotate()
    assert await agent.sync_once()
    assert all(serials(agent)[k] != first[k] for k in first)
    snapshot = agent.hub.current
    assert snapshot.bundle is not None
    for svid in snapshot.svids:
        svid.leaf.verify_directly_issued_by(authority.signer)
        authority.signer.verify_directly_issued_by(authority.root)


async def test_outage_keeps_serving_until_expiry(
    agent: NodeAgent, clock: FixedClock, authority: LocalAuthority
) -> None:
    await agent.sync_once()
    held = serials(agent)
    authority.down = True
    clock.advance(2000)  # due, but the CA is down
    with pytest.raises(CaUnavailable):
        await agent.sync_once()
    assert serials(agent) == held  # still serving what it holds
    clock.advance(1599)  # 1 s before expiry: still served
    agent._publish_if_expired()
    assert serials(agent) == held
    clock.advance(1)  # at notAfter: dropped, never served expired
    agent._publish_if_expired()
    assert serials(agent) == {}
    authority.down = False
    assert await agent.sync_once()
    assert set(serials(agent)) == set(held)


async def test_removed_entry_dropped_and_refusal_isolated(
    agent: NodeAgent, authority: LocalAuthority
) -> None:
    await agent.sync_once()
    authority.entries = [entry("web", "unix:uid:1"), entry("cache", "unix:uid:3")]
    authority.refuse = {"cache"}
    await agent.sync_once()
    assert set(serials(agent)) == {"spiffe://example.org/web"}
    authority.refuse = set()
    await agent.sync_once()
    assert set(serials(agent)) == {"spiffe://example.org/web", "spiffe://example.org/cache"}


async def test_changed_entry_is_reissued(agent: NodeAgent, authority: LocalAuthority) -> None:
    await agent.sync_once()
    first = serials(agent)
    authority.entries = [entry("web", "unix:uid:1", ttl=600), entry("db", "unix:uid:2")]
    await agent.sync_once()
    after = serials(agent)
    assert after["spiffe://example.org/web"] != first["spiffe://example.org/web"]
    assert after["spiffe://example.org/db"] == first["spiffe://example.org/db"]


async def test_jwt_svids_cached_while_fresh(
    agent: NodeAgent, clock: FixedClock, authority: LocalAuthority
) -> None:
    await agent.sync_once()
    svid = agent.hub.current.svids[0]
    calls = authority.calls
    one = await agent.jwt_svid(svid, ["b", "a"])
    two = await agent.jwt_svid(svid, ["a", "b"])
    assert one is two and authority.calls == calls + 1
    clock.advance(300 - 30)  # 30 s left: no longer reused
    three = await agent.jwt_svid(svid, ["a", "b"])
    assert three is not one


async def test_background_loop_backs_off_and_recovers(
    authority: LocalAuthority, clock: FixedClock
) -> None:
    authority.down = True
    agent = NodeAgent(
        authority, SnapshotHub(), clock, random.Random(3), AgentConfig(backoff_base=0.02)
    )
    async with agent:
        await eventually_async(lambda: authority.calls >= 3, message="three failed calls")
        assert isinstance(agent.last_error, CaUnavailable)
        assert agent.hub.current.svids == ()
        authority.down = False
        await asyncio.wait_for(agent.wait_synced(), 10)
        assert len(agent.hub.current.svids) == 2
        assert agent.last_error is None


async def test_long_pass_publishes_as_it_goes(clock: FixedClock) -> None:
    class SlowAuthority(LocalAuthority):
        async def sign_x509(self, entry, csr, current):
            clock.advance(0.05)  # each signature takes 50 ms of (monotonic) time
            return await super().sign_x509(entry, csr, current)

    authority = SlowAuthority(clock)
    authority.entries = [entry(f"w{i}", f"unix:uid:{i}") for i in range(10)]
    hub = SnapshotHub()
    agent = NodeAgent(authority, hub, clock, random.Random(1), AgentConfig(concurrency=1))
    await agent.sync_once()
    # 10 signatures x 50 ms, a publish at least every 100 ms: several
    # intermediate snapshots before the final one.
    assert 4 <= hub.current.version <= 7
    assert len(hub.current.svids) == 10


async def test_short_ttl_with_a_long_backdate_does_not_loop(clock: FixedClock) -> None:
    # notBefore 60 s back and a 60 s TTL: counted from notBefore, the
    # half-life would already be past at issuance and every pass would renew.
    authority = LocalAuthority(clock, ttl=60, backdate=60)
    authority.entries = [entry("web", "unix:uid:1")]
    agent = NodeAgent(authority, SnapshotHub(), clock, random.Random(1), AgentConfig(jitter=0.1))
    await agent.sync_once()
    assert authority.issued == 1
    assert 24 <= agent._seconds_to_next_event() <= 30
    for _ in range(20):
        clock.advance(1)
        await agent.sync_once()
    assert authority.issued == 1
    clock.advance(10)  # 30 s after issuance: due
    await agent.sync_once()
    assert authority.issued == 2


async def test_new_signing_ca_with_the_same_keys_moves_every_svid(
    agent: NodeAgent, authority: LocalAuthority
) -> None:
    await agent.sync_once()
    first = serials(agent)
    authority.activate_signer()  # only the bundle's sequence changes, not its keys
    assert await agent.sync_once()
    after = agent.hub.current.svids
    assert {str(s.spiffe_id) for s in after} == set(first)
    for svid in after:
        assert svid.serial != first[str(svid.spiffe_id)]
        svid.leaf.verify_directly_issued_by(authority.signer)
    issued = authority.issued
    assert not await agent.sync_once()  # settled: nothing more to renew
    assert authority.issued == issued


async def test_an_evicted_agent_serves_nothing(
    authority: LocalAuthority, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    hub = SnapshotHub()
    agent = NodeAgent(authority, hub, clock, random.Random(3), AgentConfig(sync_interval=0.05))
    async with agent:
        await asyncio.wait_for(agent.wait_synced(), 10)
        assert len(hub.current.svids) == 2
        authority.evicted = True
        await eventually_async(lambda: not hub.current.svids, message="the SVIDs withdrawn")
        assert agent.refused is not None and agent.refused.status == 403
        assert any("refuses this agent" in r.getMessage() for r in caplog.records)
        jwt_calls = authority.calls
        authority.evicted = False  # re-admitted: serving resumes by itself
        await eventually_async(lambda: len(hub.current.svids) == 2, message="SVIDs served again")
        assert agent.refused is None
        assert authority.calls > jwt_calls


async def test_an_entry_refused_with_403_is_dropped(
    agent: NodeAgent, authority: LocalAuthority, clock: FixedClock
) -> None:
    await agent.sync_once()
    authority.refuse = {"web"}
    clock.advance(1800)  # due
    assert await agent.sync_once()
    assert set(serials(agent)) == {"spiffe://example.org/db"}


async def test_jwt_refusal_keeps_its_status(agent: NodeAgent, authority: LocalAuthority) -> None:
    await agent.sync_once()
    svid = agent.hub.current.svids[0]
    authority.evicted = True
    with pytest.raises(CaRejected) as caught:
        await agent.jwt_svid(svid, ["a"])
    assert caught.value.status == 403


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (CaRejected("bad audience", 400), "INVALID_ARGUMENT"),
        (CaRejected("too big", 413), "INVALID_ARGUMENT"),
        (CaRejected("no entry", 404), "PERMISSION_DENIED"),
        (CaRejected("evicted", 403), "PERMISSION_DENIED"),
        (CaRejected("no credential", 401), "PERMISSION_DENIED"),
        (CaUnavailable("down"), "UNAVAILABLE"),
    ],
)
def test_ca_failures_map_to_workload_api_statuses(error: CaRejected, status: str) -> None:
    assert status_for(error).name == status


async def test_another_issuer_without_a_bundle_change_is_not_churned(
    agent: NodeAgent, authority: LocalAuthority
) -> None:
    # Several CA replicas, each signing with its own CA under one root: SVIDs
    # from different issuers are normal, and only a bundle change makes the
    # agent move them all to the issuer that signs now.
    await agent.sync_once()
    first = serials(agent)
    authority.activate_signer()
    authority.sequence -= 1  # the same bundle as before
    authority.entries = [entry("web", "unix:uid:1", ttl=600), entry("db", "unix:uid:2")]
    issued = authority.issued
    await agent.sync_once()
    assert authority.issued == issued + 1  # web only (its entry changed)
    assert serials(agent)["spiffe://example.org/db"] == first["spiffe://example.org/db"]


async def test_a_refused_entry_does_not_hold_back_the_move_to_a_new_ca(
    agent: NodeAgent, authority: LocalAuthority
) -> None:
    await agent.sync_once()
    authority.entries = [*authority.entries, entry("bad", "unix:uid:9")]
    authority.refuse = {"bad"}  # refused at every pass
    await agent.sync_once()
    authority.activate_signer()
    await agent.sync_once()
    for svid in agent.hub.current.svids:
        svid.leaf.verify_directly_issued_by(authority.signer)
