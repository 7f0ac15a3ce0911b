"""One trust domain served by several ``meshward ca serve`` replicas on one database.

The database holds the shared root and, per replica (``ca.replica_id``), its
own slots: each replica signs with its own signing CA and JWT key under the
shared root, and every replica publishes all of them (its own slots, the
others as :class:`~ca.authority.PeerCa`). Keys are stored encrypted with the
CA passphrase, exactly as on disk.

:class:`DbAuthority` is the :class:`~ca.state.AuthorityHome` of a replica:

- ``mtime()`` is the database's bundle sequence, bumped by every change of
  any replica, so every replica notices a rotation anywhere and reloads the
  bundle (its TLS trust, ``/v1/bundle``);
- ``lease()`` is a lease row in the database: one replica prepares,
  activates or prunes at a time, after reloading what the previous holder
  did; a replica that dies with the lease loses it when it expires;
- ``join()`` creates the replica's first signing CA the first time it serves.

:class:`DbRateLimiter` keeps the per-caller token buckets in the database, so
a caller's rate holds across replicas (and ``ca serve --workers N``);
:class:`LoopRates` takes the tokens of the callers of one event-loop step
from those buckets in one transaction.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca.authority import Authority, PeerCa, SerialSource, Slot, make_slot
from ca.errors import KeystoreError, NotInitialized
from ca.groupcommit import LoopBatch
from ca.keystore import KeyKind, decrypt_key, encrypt_key, generate_key
from ca.store.protocol import (
    AuthorityRecords,
    BatchCallerRates,
    CallerRates,
    RootRecord,
    SlotRecord,
)
from meshward.clock import Clock
from meshward.spiffe import TrustDomain

__all__ = ["DbAuthority", "DbRateLimiter", "LoopRates", "ROTATION_LEASE"]

log = logging.getLogger("meshward.ca.replicas")

ROTATION_LEASE = "rotation"
_PEM = serialization.Encoding.PEM


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(_PEM)


def _public_pem(slot: Slot) -> bytes:
    return slot.jwt_key.public_key().public_bytes(
        _PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def slot_records(replica: str, authority: Authority, passphrase: bytes) -> list[SlotRecord]:
    """The rows of ``authority``'s own slots."""

    def row(slot: Slot, state: Literal["next", "active", "retired"]) -> SlotRecord:
        return SlotRecord(
            replica,
            slot.id,
            state,
            _cert_pem(slot.ca_cert),
            encrypt_key(slot.ca_key, passphrase),
            encrypt_key(slot.jwt_key, passphrase),
            _public_pem(slot),
        )

    rows = [row(s, "retired") for s in authority.retired]
    rows.append(row(authority.active, "active"))
    if authority.next is not None:
        rows.append(row(authority.next, "next"))
    return rows


def root_record(authority: Authority, passphrase: bytes) -> RootRecord:
    return RootRecord(
        authority.trust_domain.name,
        _cert_pem(authority.root_cert),
        encrypt_key(authority.root_key, passphrase),
        authority.refresh_hint,
        authority.sequence,
    )


@dataclass
class DbAuthority:
    """A replica's authority, kept in the shared database."""

    records: AuthorityRecords
    replica: str
    clock: Clock
    lease_seconds: float = 30.0
    holder: str = ""  # who holds the lease: this process (workers of a replica take turns)
    _decrypted: dict[tuple[str, int, str], object] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.holder:
            self.holder = f"{self.replica}/{os.getpid()}"

    def exists(self) -> bool:
        return self.records.authority_sequence() is not None

    def mtime(self) -> float:
        return float(self.records.authority_sequence() or 0)

    def init(self, authority: Authority, passphrase: bytes) -> None:
        """Store a new trust domain (``meshward ca init``); its slots are this replica's."""
        self.records.init_authority(
            root_record(authority, passphrase), slot_records(self.replica, authority, passphrase)
        )

    def save(self, authority: Authority, passphrase: bytes) -> Authority:
        sequence = self.records.save_slots(
            self.replica, slot_records(self.replica, authority, passphrase)
        )
        return replace(authority, sequence=sequence)

    def _key(self, data: bytes, passphrase: bytes, where: str) -> object:
        # Decrypting is slow by design (PBKDF2); a slot's keys never change, so once is enough.
        cache_key = (where, len(data), data[-64:].hex())
        if cache_key not in self._decrypted:
            self._decrypted[cache_key] = decrypt_key(data, passphrase, where)
        return self._decrypted[cache_key]

    def load(self, passphrase: bytes) -> Authority:
        loaded = self.records.load_authority()
        if loaded is None:
            raise NotInitialized("no CA in the database; run `meshward ca init` first")
        root, rows = loaded
        own = [r for r in rows if r.replica == self.replica]
        if not any(r.state == "active" for r in own):
            raise NotInitialized(f"replica {self.replica} has no signing CA yet")
        try:

            def slot(r: SlotRecord) -> Slot:
                where = f"{r.replica}/slot-{r.id}"
                return Slot(
                    r.id,
                    x509.load_pem_x509_certificate(r.ca_cert),
                    self._key(r.ca_key, passphrase, where),  # type: ignore[arg-type]
                    self._key(r.jwt_key, passphrase, where + ".jwt"),  # type: ignore[arg-type]
                )

            peers = tuple(
                PeerCa(
                    x509.load_pem_x509_certificate(r.ca_cert),
                    serialization.load_pem_public_key(r.jwt_public),  # type: ignore[arg-type]
                )
                for r in rows
                if r.replica != self.replica
            )
            active = next(r for r in own if r.state == "active")
            nxt = next((r for r in own if r.state == "next"), None)
            return Authority(
                trust_domain=TrustDomain(root.trust_domain),
                root_cert=x509.load_pem_x509_certificate(root.root_cert),
                root_key=self._key(root.root_key, passphrase, "root"),  # type: ignore[arg-type]
                active=slot(active),
                next=slot(nxt) if nxt is not None else None,
                retired=tuple(slot(r) for r in own if r.state == "retired"),
                sequence=root.sequence,
                refresh_hint=root.refresh_hint,
                peers=peers,
                label=self.replica,
            )
        except ValueError as exc:
            raise KeystoreError(f"CA state in the database is unreadable: {exc}") from exc

    def adopt_newest(self) -> None:
        """Act as the replica with the newest signing CA (a CLI on a host that is no replica)."""
        loaded = self.records.load_authority()
        if loaded is None:
            raise NotInitialized("no CA in the database; run `meshward ca init` first")
        if any(r.replica == self.replica and r.state == "active" for r in loaded[1]):
            return
        active = [r for r in loaded[1] if r.state == "active"]
        if not active:
            raise NotInitialized("no replica has a signing CA")
        newest = max(
            active, key=lambda r: x509.load_pem_x509_certificate(r.ca_cert).not_valid_before_utc
        )
        self.replica = newest.replica

    def join(
        self,
        passphrase: bytes,
        key_type: KeyKind,
        jwt_key_type: KeyKind,
        ca_ttl: int,
        serials: SerialSource,
    ) -> bool:
        """Give this replica its first signing CA under the shared root; True if it was new."""
        loaded = self.records.load_authority()
        if loaded is None:
            raise NotInitialized("no CA in the database; run `meshward ca init` first")
        root, rows = loaded
        if any(r.replica == self.replica and r.state == "active" for r in rows):
            return False
        root_cert = x509.load_pem_x509_certificate(root.root_cert)
        root_key = self._key(root.root_key, passphrase, "root")
        slot = make_slot(
            1,
            TrustDomain(root.trust_domain),
            root_cert,
            root_key,  # type: ignore[arg-type]
            generate_key(key_type),
            generate_key(jwt_key_type),
            self.clock.now(),
            dt.timedelta(seconds=ca_ttl),
            serials(),
            self.replica,
        )
        authority = Authority(TrustDomain(root.trust_domain), root_cert, root_key, slot)  # type: ignore[arg-type]
        self.records.save_slots(self.replica, slot_records(self.replica, authority, passphrase))
        log.info("replica joined the trust domain", extra={"fields": {"replica": self.replica}})
        return True

    @contextlib.contextmanager
    def lease(self, now: dt.datetime) -> Iterator[bool]:
        held = self.records.acquire_lease(ROTATION_LEASE, self.holder, now, self.lease_seconds)
        try:
            yield held
        finally:
            if held:
                self.records.release_lease(ROTATION_LEASE, self.holder)


@dataclass
class DbRateLimiter:
    """``rate`` issuance requests/s per caller, bursts up to ``burst``, across replicas.

    The buckets are stamped with wall-clock seconds from ``clock`` (replicas
    share no monotonic clock); the ``now`` the service passes is not used.
    """

    records: CallerRates
    rate: float
    burst: int
    clock: Clock

    def allow(self, key: str, now: float) -> bool:
        del now
        return self.records.take_token(key, self.clock.now().timestamp(), self.rate, self.burst)

    def prune(self) -> int:
        """Forget buckets that have been full for a while (called by the rotation task)."""
        idle = self.burst / self.rate + 60.0
        return self.records.prune_rates(self.clock.now().timestamp() - idle)


class LoopRates:
    """The answers of ``limiter`` for callers on the event loop, one transaction per loop step.

    Each answer is the one :meth:`DbRateLimiter.allow` gives, as if the
    callers of the step had asked one after another.
    """

    def __init__(self, limiter: DbRateLimiter, records: BatchCallerRates) -> None:
        self.limiter = limiter
        self._records = records
        self._batch: LoopBatch[str, bool] = LoopBatch(self._take)

    def _take(self, keys: Sequence[str]) -> list[bool]:
        lim = self.limiter
        return self._records.take_tokens(keys, lim.clock.now().timestamp(), lim.rate, lim.burst)

    async def allow(self, key: str) -> bool:
        (allowed,) = await self._batch.run([key])
        return allowed
