"""The renewal loop: one task that owns every call to the CA and every publish.

Each pass fetches the bundle and this node's entries, then obtains an SVID for
every entry that has none, whose SVID is due (half-life with jitter), whose
entry changed, or - when the bundle's authorities changed - all of them. It
then publishes one new :class:`~ca.agent.model.Snapshot`. When the CA cannot be
reached the agent keeps serving what it holds (dropping only SVIDs that have
expired), retries with capped exponential backoff, and resumes by itself.
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

from ca.agent.background import BackgroundTask
from ca.agent.errors import CaError, CaRejected, CaUnavailable
from ca.agent.hub import SnapshotHub
from ca.agent.model import Bundle, Entry, HeldSvid
from ca.agent.renewal import backoff_delay, renew_at
from ca.agent.source import IdentitySource, JwtSvidToken
from meshward import x509_svid
from meshward.clock import Clock

__all__ = ["AgentConfig", "NodeAgent", "build_csr"]

log = logging.getLogger("meshward.agent")

_JWT_CACHE_MAX = 4096


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Timings of the renewal loop, in seconds."""

    sync_interval: float = 30.0  # how often bundle and entries are re-read
    jitter: float = 0.1  # fraction of an SVID's life renewal may come early
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    concurrency: int = 8  # CA calls in flight at once
    jwt_min_remaining: float = 30.0  # a cached JWT-SVID is reused while it has this left
    publish_every: float = 0.1  # during a long pass, publish what is renewed this often


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
        self._wake = asyncio.Event()
        self._task = BackgroundTask(self._run, "meshward-agent-renewal")
        self._failures = 0
        self._synced = asyncio.Event()
        self._published_at = clock.monotonic()
        self.last_error: CaError | None = None

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
            except CaError as exc:
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
        """One pass; return whether a new snapshot was published. Raises :class:`CaError`."""
        bundle = await self.source.fetch_bundle()
        entries = {e.entry_id: e for e in await self.source.fetch_entries()}
        now = self.clock.now()
        bundle_changed = not bundle.same_keys(self._bundle)
        changed = bundle_changed or bundle != self._bundle
        self._bundle = bundle

        for gone in set(self._slots) - set(entries):
            del self._slots[gone]
            changed = True
        self._entries = entries

        todo: list[Entry] = []
        for entry_id, entry in entries.items():
            slot = self._slots.get(entry_id)
            if (
                slot is None
                or bundle_changed
                or slot.svid.entry != entry
                or now >= slot.due
                or not slot.svid.valid_at(now)
            ):
                todo.append(entry)

        renewed, unavailable = await self._renew(todo, now)
        if renewed or changed:
            if bundle_changed:
                self._jwt_cache.clear()
            self._publish()
        if unavailable is not None:
            raise unavailable
        return renewed > 0 or changed

    async def _renew(self, todo: Sequence[Entry], now: dt.datetime) -> tuple[int, CaError | None]:
        gate = asyncio.Semaphore(self.config.concurrency)
        unavailable: list[CaError] = []

        async def one(entry: Entry) -> bool:
            async with gate:
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
                    return False
                except CaUnavailable as exc:
                    unavailable.append(exc)
                    return False
                except ValueError as exc:
                    unavailable.append(CaUnavailable(f"CA returned an unusable SVID: {exc}"))
                    return False
                due = renew_at(
                    svid.not_before, svid.not_after, self.random.random(), self.config.jitter
                )
                self._slots[entry.entry_id] = _Slot(svid, due)
                if self.clock.monotonic() - self._published_at >= self.config.publish_every:
                    # A pass over many entries: hand out what is ready, not all at the end.
                    self._publish()
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

    def _publish(self) -> None:
        now = self.clock.now()
        svids = [
            self._slots[k].svid
            for k in sorted(self._slots, key=lambda k: (str(self._slots[k].svid.spiffe_id), k))
            if self._slots[k].svid.valid_at(now)
        ]
        self.hub.publish(self._bundle, svids)
        self._published_at = self.clock.monotonic()

    # -- JWT-SVIDs ------------------------------------------------------------------

    async def jwt_svid(self, svid: HeldSvid, audience: Sequence[str]) -> JwtSvidToken:
        """A JWT-SVID for ``svid``'s identity, reused while it has enough life left."""
        key = (str(svid.spiffe_id), tuple(sorted(set(audience))))
        cached = self._jwt_cache.get(key)
        now = self.clock.now()
        if cached is not None:
            left = (cached.expires_at - now).total_seconds()
            if left > self.config.jwt_min_remaining:
                return cached
        token = await self.source.sign_jwt(svid, list(key[1]))
        if len(self._jwt_cache) >= _JWT_CACHE_MAX:
            self._jwt_cache = {k: v for k, v in self._jwt_cache.items() if v.expires_at > now}
            if len(self._jwt_cache) >= _JWT_CACHE_MAX:
                self._jwt_cache.clear()
        self._jwt_cache[key] = token
        return token
