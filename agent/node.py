"""The renewal loop: one task that owns every call to the CA and every publish.

Each pass fetches the bundle and this node's entries, then obtains an SVID for
every entry that has none, whose SVID is due (half of its real validity window,
with jitter), or whose entry changed. It then publishes one new
:class:`~agent.model.Snapshot`.

- An entry the CA no longer lists is dropped from the snapshot in that pass.
- When the bundle changes at all (a new ``spiffe_sequence`` included: ``ca
  rotate prepare``/``activate``), one SVID is renewed as a probe; every held
  SVID whose issuer differs from the one the CA signs with now is renewed in
  the same pass, so workloads move to a new signing CA within one sync.
- When the CA refuses the agent itself (401/403: an evicted node), every SVID
  is dropped and nothing is served until the CA accepts the agent again.
- When the CA cannot be reached the agent keeps serving what it holds
  (dropping only SVIDs that have expired), retries with capped exponential
  backoff, and resumes by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random as _random
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from agent.background import BackgroundTask
from agent.errors import CaRejected, CaRequestFailed, CaUnavailable, RateLimited
from agent.fair import FairGate
from agent.hub import SnapshotHub
from agent.model import Bundle, Entry, HeldSvid
from agent.renewal import backoff_delay, renew_at
from agent.source import IdentitySource, JwtSvidToken
from meshward import x509_svid
from meshward.clock import Clock
from meshward.ratelimit import RateLimiter

__all__ = ["AgentConfig", "NodeAgent", "agent_refused", "build_csr"]

log = logging.getLogger("meshward.agent")

_JWT_CACHE_MAX = 4096


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Timings of the renewal loop, in seconds."""

    sync_interval: float = 30.0  # how often bundle and entries are re-read
    jitter: float = 0.1  # fraction of an SVID's life renewal may come early
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    concurrency: int = 8  # CA calls in flight at once (renewals first, then workloads in turn)
    jwt_min_remaining: float = 30.0  # a cached JWT-SVID is reused while it has this left
    publish_every: float = 0.1  # during a long pass, publish what is renewed this often
    min_renew_after: float = 1.0  # never renew an SVID sooner than this after obtaining it
    jwt_rate_per_second: float = 5.0  # JWT-SVIDs one workload may have the CA sign, per second
    jwt_rate_burst: int = 20


REFUSED_STATUSES = frozenset({401, 403})


def agent_refused(exc: CaRequestFailed) -> bool:
    """Whether ``exc`` means the CA refuses the agent itself (evicted, unknown node)."""
    return isinstance(exc, CaRejected) and exc.status in REFUSED_STATUSES


def build_csr(entry: Entry, key: ec.EllipticCurvePrivateKey) -> x509.CertificateSigningRequest:
    """A CSR for ``entry`` (the CA decides the certificate's contents; it ignores ours)."""
    return x509_svid.build_csr(key, entry.spiffe_id)


@dataclass(slots=True)
class _Slot:
    svid: HeldSvid
    due: dt.datetime


class NodeAgent:
    """Keeps this node's SVIDs current in a :class:`SnapshotHub`.

    ``random`` supplies jitter; ``clock`` every reading of time. Use as
    ``async with agent:`` (or :meth:`start` / :meth:`stop`).
    """

    def __init__(
        self,
        source: IdentitySource,
        hub: SnapshotHub,
        clock: Clock,
        random: _random.Random | None = None,
        config: AgentConfig | None = None,
    ) -> None:
        self.source = source
        self.hub = hub
        self.clock = clock
        self.random = random or _random.Random()  # noqa: S311 - jitter, not secrets
        self.config = config or AgentConfig()
        self._bundle: Bundle | None = None
        self._entries: dict[str, Entry] = {}
        self._slots: dict[str, _Slot] = {}
        self._jwt_cache: dict[tuple[str, tuple[str, ...]], JwtSvidToken] = {}
        self._gate = FairGate(self.config.concurrency)
        self._jwt_limiter = RateLimiter(self.config.jwt_rate_per_second, self.config.jwt_rate_burst)
        self._wake = asyncio.Event()
        self._task = BackgroundTask(self._run, "meshward-agent-renewal")
        self._failures = 0
        self._synced = asyncio.Event()
        self._published_at = clock.monotonic()
        self._issuer: bytes | None = None  # the signing CA of this pass's newest SVID
        self._follow_issuer = False  # the bundle changed: move SVIDs to the CA that signs now
        self.last_error: CaRequestFailed | None = None
        self.refused: CaRejected | None = None  # set while the CA refuses this agent

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        await self._task.stop()

    async def __aenter__(self) -> NodeAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_synced(self) -> None:
        """Return once the first pass with the CA has succeeded."""
        await self._synced.wait()

    def rotate_now(self) -> None:
        """Renew every SVID on the next pass (which starts at once)."""
        now = self.clock.now()
        for slot in self._slots.values():
            slot.due = now
        self._wake.set()

    def wake(self) -> None:
        """Start a pass now (re-read bundle and entries; renew what is due)."""
        self._wake.set()

    # -- the loop ------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.sync_once()
            except CaRejected as exc:
                self._failures += 1
                self.last_error = exc
                delay = self.config.sync_interval  # asking again sooner changes nothing
                if agent_refused(exc):
                    self._refuse(exc)
                else:
                    log.warning(
                        "CA refused a sync; retrying",
                        extra={"fields": {"code": exc.code, "status": exc.status}},
                    )
                    self._publish_if_expired()
            except CaRequestFailed as exc:
                self._failures += 1
                self.last_error = exc
                delay = backoff_delay(
                    self._failures,
                    self.random.random,
                    self.config.backoff_base,
                    self.config.backoff_cap,
                )
                log.warning(
                    "CA call failed; serving held SVIDs and retrying",
                    extra={"fields": {"code": exc.code, "retry_in": round(delay, 2)}},
                )
                self._publish_if_expired()
            else:
                self._failures = 0
                self.last_error = None
                if self.refused is not None:
                    log.warning("the CA accepts this agent again; serving SVIDs")
                    self.refused = None
                self._synced.set()
                delay = self._seconds_to_next_event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(delay, 0.01))

    def _seconds_to_next_event(self) -> float:
        now = self.clock.now()
        delay = self.config.sync_interval
        for slot in self._slots.values():
            delay = min(delay, (slot.due - now).total_seconds())
            delay = min(delay, (slot.svid.not_after - now).total_seconds())
        return max(delay, 0.0)

    def _refuse(self, exc: CaRejected) -> None:
        """The CA refuses this agent: drop every SVID and JWT-SVID, serve nothing."""
        first = self.refused is None
        self.refused = exc
        dropped = len(self._slots)
        self._slots.clear()
        self._jwt_cache.clear()
        self._entries = {}
        if first or dropped:
            log.error(
                "the CA refuses this agent (evicted or no longer authorized); it stops "
                "serving its workloads' SVIDs until the CA accepts it again",
                extra={"fields": {"status": exc.status, "code": exc.code, "dropped": dropped}},
            )
            self._publish()
        # Waiters for a first sync get their answer: nothing will be served.
        self._synced.set()

    def _publish_if_expired(self) -> None:
        now = self.clock.now()
        expired = [k for k, s in self._slots.items() if s.svid.not_after <= now]
        for key in expired:
            log.error(
                "SVID expired before it could be renewed",
                extra={"fields": {"spiffe_id": str(self._slots[key].svid.spiffe_id)}},
            )
            del self._slots[key]
        if expired:
            self._publish()

    async def sync_once(self) -> bool:
        """One pass; whether a new snapshot was published. Raises :class:`CaRequestFailed`."""
        bundle = await self.source.fetch_bundle()
        entries = {e.entry_id: e for e in await self.source.fetch_entries()}
        now = self.clock.now()
        keys_changed = not bundle.same_keys(self._bundle)
        if self._bundle is not None and bundle != self._bundle:
            self._follow_issuer = True  # until a pass has checked which CA signs now
        changed = keys_changed or bundle != self._bundle
        self._bundle = bundle

        for gone in set(self._slots) - set(entries):
            log.info(
                "entry removed; its SVID is no longer served",
                extra={"fields": {"spiffe_id": str(self._slots[gone].svid.spiffe_id)}},
            )
            del self._slots[gone]
            changed = True
        self._entries = entries

        todo: list[Entry] = []
        for entry_id, entry in entries.items():
            slot = self._slots.get(entry_id)
            if (
                slot is None
                or slot.svid.entry != entry
                or now >= slot.due
                or not slot.svid.valid_at(now)
            ):
                todo.append(entry)
        if self._follow_issuer and self._slots and not any(e.entry_id in self._slots for e in todo):
            # The bundle moved (e.g. a new signing CA was activated): renewing one
            # held SVID shows which CA signs now; the rest follow below if it changed.
            soonest = min(self._slots, key=lambda k: self._slots[k].due)
            todo.append(entries[soonest])

        self._issuer = None
        renewed, unavailable = await self._renew(todo, now)
        if self._follow_issuer and unavailable is None and self._issuer is not None:
            # Only after a bundle change: with several CA replicas, each signing
            # with its own CA, issuers legitimately differ between renewals.
            stale = [
                entries[k] for k, slot in self._slots.items() if slot.svid.issuer_id != self._issuer
            ]
            if stale:
                log.info(
                    "the CA signs with a new signing CA; renewing every SVID onto it",
                    extra={"fields": {"svids": len(stale)}},
                )
                self._jwt_cache.clear()
                more, unavailable = await self._renew(stale, now)
                renewed += more
            self._follow_issuer = unavailable is not None
        if renewed or changed:
            if keys_changed:
                self._jwt_cache.clear()
            self._publish()
        if unavailable is not None:
            raise unavailable
        return renewed > 0 or changed

    async def _renew(
        self, todo: Sequence[Entry], now: dt.datetime
    ) -> tuple[int, CaRequestFailed | None]:
        """Obtain SVIDs for ``todo``; return how many slots changed and the first outage."""
        unavailable: list[CaRequestFailed] = []

        async def one(entry: Entry) -> bool:
            async with self._gate.slot():
                if unavailable:
                    return False
                current = self._slots.get(entry.entry_id)
                held = current.svid if current and current.svid.valid_at(now) else None
                key = ec.generate_private_key(ec.SECP256R1())
                try:
                    chain = await self.source.sign_x509(entry, build_csr(entry, key), held)
                    svid = HeldSvid.create(entry, chain, key)
                except CaRejected as exc:
                    log.error(
                        "CA refused an SVID for an entry",
                        extra={"fields": {"spiffe_id": str(entry.spiffe_id), "code": exc.code}},
                    )
                    if agent_refused(exc) or exc.status == 404:
                        # The CA says no for this entry: stop serving what we hold for it
                        # (True: the snapshot changed).
                        return self._slots.pop(entry.entry_id, None) is not None
                    return False
                except CaUnavailable as exc:
                    unavailable.append(exc)
                    return False
                except ValueError as exc:
                    unavailable.append(CaUnavailable(f"CA returned an unusable SVID: {exc}"))
                    return False
                self._slots[entry.entry_id] = _Slot(svid, self._due(svid))
                self._issuer = svid.issuer_id
                if self.clock.monotonic() - self._published_at >= self.config.publish_every:
                    # A pass over many entries: hand out what is ready, not all at the end.
                    self._publish(partial=True)
                log.info(
                    "SVID obtained",
                    extra={
                        "fields": {
                            "spiffe_id": str(entry.spiffe_id),
                            "serial": f"{svid.serial:x}",
                            "not_after": svid.not_after.isoformat(),
                        }
                    },
                )
                return True

        results = await asyncio.gather(*(one(e) for e in todo))
        return sum(results), (unavailable[0] if unavailable else None)

    def _due(self, svid: HeldSvid) -> dt.datetime:
        """When to renew ``svid``: from its real validity window, not its backdated notBefore."""
        now = self.clock.now()
        start = min(max(svid.not_before, now), svid.not_after)
        due = renew_at(start, svid.not_after, self.random.random(), self.config.jitter)
        floor = min(now + dt.timedelta(seconds=self.config.min_renew_after), svid.not_after)
        return max(due, floor)

    def _publish(self, partial: bool = False) -> None:
        now = self.clock.now()
        svids = [
            self._slots[k].svid
            for k in sorted(self._slots, key=lambda k: (str(self._slots[k].svid.spiffe_id), k))
            if self._slots[k].svid.valid_at(now)
        ]
        self.hub.publish(self._bundle, svids, partial)
        self._published_at = self.clock.monotonic()

    # -- JWT-SVIDs ------------------------------------------------------------------

    async def jwt_svid(
        self, svid: HeldSvid, audience: Sequence[str], workload: str = "agent"
    ) -> JwtSvidToken:
        """A JWT-SVID for ``svid``'s identity, reused while it has enough life left.

        A new one is asked of the CA only within ``workload``'s rate (else
        :class:`RateLimited`) and in ``workload``'s turn, after any renewal.
        """
        key = (str(svid.spiffe_id), tuple(sorted(set(audience))))
        cached = self._jwt_cache.get(key)
        now = self.clock.now()
        if cached is not None:
            left = (cached.expires_at - now).total_seconds()
            if left > self.config.jwt_min_remaining:
                return cached
        if not self._jwt_limiter.allow(workload, self.clock.monotonic()):
            raise RateLimited("too many JWT-SVID requests from this workload")
        async with self._gate.slot(workload):
            token = await self.source.sign_jwt(svid, list(key[1]))
        if len(self._jwt_cache) >= _JWT_CACHE_MAX:
            self._jwt_cache = {k: v for k, v in self._jwt_cache.items() if v.expires_at > now}
            if len(self._jwt_cache) >= _JWT_CACHE_MAX:
                self._jwt_cache.clear()
        self._jwt_cache[key] = token
        return token
