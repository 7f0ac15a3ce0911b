"""When the CA's signing keys change: by hand (``ca rotate``) or by the clock.

A :class:`Rotator` owns the current :class:`~ca.authority.Authority`, saves
each change to the state directory (when there is one) and picks up changes
another process or replica made. Rotation steps hold a lease on the state so
two replicas never rotate at once; each step is audited.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ca.attestation.caller import Caller
from ca.audit import Auditor, Outcome
from ca.authority import Authority, SerialSource, make_slot
from ca.errors import Conflict
from ca.keystore import generate_key
from ca.metrics import CaMetrics
from ca.state import AuthorityHome
from meshward.clock import Clock
from meshward.settings import CaSettings

__all__ = ["Rotator"]

log = logging.getLogger("meshward.ca")


@dataclass
class Rotator:
    """The current authority and the rotation state machine over it. Thread-safe."""

    authority: Authority
    settings: CaSettings
    clock: Clock
    serials: SerialSource
    metrics: CaMetrics
    auditor: Auditor
    lock: threading.RLock
    files: AuthorityHome | None = None
    passphrase: bytes | None = field(default=None, repr=False)
    _loaded_mtime: float = 0.0

    def __post_init__(self) -> None:
        if self.files is not None:
            self._loaded_mtime = self.files.mtime()
        self._publish_gauges()

    def _save(self, authority: Authority) -> None:
        if self.files is not None and self.passphrase is not None:
            authority = self.files.save(authority, self.passphrase)
            self._loaded_mtime = self.files.mtime()
        self.authority = authority
        self._publish_gauges()

    def _publish_gauges(self) -> None:
        self.metrics.signing_ca_not_after.set(self.authority.active.not_after.timestamp())
        self.metrics.bundle_sequence.set(self.authority.sequence)

    @contextmanager
    def _lease(self) -> Iterator[bool]:
        """Hold the rotation lease (other processes/replicas on the same state or database)."""
        if self.files is None:
            yield True
            return
        with self.files.lease(self.clock.now()) as held:
            if held:
                self.reload_if_changed()  # start from what the previous holder did
            yield held

    def _by_hand(self, step: Callable[[Caller], Authority], caller: Caller) -> Authority:
        with self.lock, self._lease() as held:
            if not held:
                raise Conflict("another process is rotating; try again", code="rotation_busy")
            return step(caller)

    def prepare(self, caller: Caller) -> Authority:
        """Add the next signing slot (published in the bundle, not yet signing)."""
        return self._by_hand(self._prepare, caller)

    def activate(self, caller: Caller) -> Authority:
        """Make the prepared slot the one that signs."""
        return self._by_hand(self._activate, caller)

    def _prepare(self, caller: Caller) -> Authority:
        outcome = Outcome(method="admin")
        with self.auditor.audited("rotate_prepare", caller, outcome), self.lock:
            current = self.authority
            next_id = max(s.id for s in current.slots) + 1
            slot = make_slot(
                next_id,
                current.trust_domain,
                current.root_cert,
                current.root_key,
                generate_key(self.settings.key_type),
                generate_key(self.settings.jwt_key_type),
                self.clock.now(),
                dt.timedelta(seconds=self.settings.ca_ttl),
                self.serials(),
                current.label,
            )
            self._save(current.prepare(slot))
            outcome.detail = f"slot={next_id} sequence={self.authority.sequence}"
            outcome.not_after = slot.not_after
            return self.authority

    def _activate(self, caller: Caller) -> Authority:
        outcome = Outcome(method="admin")
        with self.auditor.audited("rotate_activate", caller, outcome), self.lock:
            self._save(self.authority.activate())
            outcome.detail = f"slot={self.authority.active.id} sequence={self.authority.sequence}"
            outcome.not_after = self.authority.active.not_after
            return self.authority

    def reload_if_changed(self) -> bool:
        """Pick up a rotation made by another process (``meshward ca rotate``)."""
        if self.files is None or self.passphrase is None:
            return False
        mtime = self.files.mtime()
        if mtime == self._loaded_mtime:
            return False
        with self.lock:
            loaded = self.files.load(self.passphrase)
            self._loaded_mtime = mtime
            if loaded.sequence <= self.authority.sequence:
                return False
            self.authority = loaded
            self._publish_gauges()
        log.info("CA state reloaded", extra={"fields": {"sequence": loaded.sequence}})
        return True

    def tick(self) -> bool:
        """One step of the rotation state machine; True when the bundle changed."""
        changed = self.reload_if_changed()
        system = Caller(address="rotator")
        now = self.clock.now()
        with self.lock:
            due = self.authority
            if not (
                due.should_prune(now)
                or due.should_prepare_next(now)
                or due.should_activate_next(now)
            ):
                return changed
            with self._lease() as held:
                if not held:  # another replica is rotating: next tick
                    return changed
                changed = self._steps(now, system) or changed
        return changed

    def _steps(self, now: dt.datetime, system: Caller) -> bool:
        changed = False
        if self.authority.should_prune(now):
            outcome = Outcome(method="auto")
            with self.auditor.audited("rotate_prune", system, outcome):
                self._save(self.authority.prune(now))
            changed = True
        if self.authority.should_prepare_next(now):
            self._prepare(system)
            changed = True
        if self.authority.should_activate_next(now):
            self._activate(system)
            changed = True
        return changed
