"""The CA store interface: small protocols, one per ability, and their values.

A backend (SQLite today, PostgreSQL later) implements :class:`CaStore` and
asserts so at import time. Every method is synchronous and safe to call from
several threads; the API runs them in a worker thread.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from meshward.spiffe import SpiffeId

__all__ = [
    "AgentRecord",
    "AgentStore",
    "AuditLog",
    "AuditRecord",
    "AuthorityRecords",
    "BatchCallerRates",
    "BatchWrites",
    "CallerRates",
    "CaStore",
    "Entry",
    "EntryStore",
    "JoinToken",
    "RootRecord",
    "SlotRecord",
    "TokenListing",
    "TokenStore",
]


@dataclass(frozen=True)
class Entry:
    """A registration entry: who (selectors, all must match) may get which SPIFFE ID."""

    id: str
    spiffe_id: SpiffeId
    selectors: frozenset[str] = frozenset()
    x509_ttl: int | None = None  # seconds; None: the CA default
    jwt_ttl: int | None = None
    dns_names: tuple[str, ...] = ()
    admin: bool = False

    def matches(self, attested: frozenset[str]) -> bool:
        """True when every selector of the entry was attested (an entry needs one)."""
        return bool(self.selectors) and self.selectors <= attested

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "spiffe_id": str(self.spiffe_id),
            "selectors": sorted(self.selectors),
            "x509_ttl": self.x509_ttl,
            "jwt_ttl": self.jwt_ttl,
            "dns_names": list(self.dns_names),
            "admin": self.admin,
        }


@dataclass(frozen=True)
class JoinToken:
    """A one-time join token, known to the store only by its hash."""

    token_hash: str
    spiffe_id: SpiffeId
    expires_at: dt.datetime
    used_at: dt.datetime | None = None


@dataclass(frozen=True)
class AgentRecord:
    """A node agent the CA has attested: its node SPIFFE ID and whether it was evicted.

    ``attestation`` is how the node first proved itself (``join_token``,
    ``k8s``); ``serial`` is the hex serial of the node SVID issued last. An
    evicted record stays (so the node cannot come back with a leftover join
    token or renew an SVID it still holds) until an operator deletes it.
    """

    spiffe_id: SpiffeId
    attestation: str
    first_seen: dt.datetime
    last_seen: dt.datetime
    serial: str | None = None
    evicted: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "spiffe_id": str(self.spiffe_id),
            "attestation": self.attestation,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "serial": self.serial,
            "evicted": self.evicted,
        }


@dataclass(frozen=True)
class AuditRecord:
    """One issuance or admin action (never a key or a token)."""

    time: dt.datetime
    action: str  # x509_svid, jwt_svid, entry_add, token_create, rotate_prepare, ...
    method: str  # join_token, k8s, renewal, admin, cli
    caller: str
    result: str  # ok, or the error code
    spiffe_id: str | None = None
    serial: str | None = None
    not_after: dt.datetime | None = None
    detail: str | None = None
    id: int | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, object]:
        return {
            "time": self.time.isoformat(),
            "action": self.action,
            "method": self.method,
            "caller": self.caller,
            "result": self.result,
            "spiffe_id": self.spiffe_id,
            "serial": self.serial,
            "not_after": self.not_after.isoformat() if self.not_after else None,
            "detail": self.detail,
        }


@runtime_checkable
class EntryStore(Protocol):
    def add_entry(self, entry: Entry) -> None: ...
    def get_entry(self, entry_id: str) -> Entry | None: ...
    def list_entries(self) -> list[Entry]: ...
    def remove_entry(self, entry_id: str) -> bool: ...
    def entries_for(self, spiffe_id: SpiffeId) -> list[Entry]: ...


@runtime_checkable
class TokenStore(Protocol):
    def add_token(self, token: JoinToken) -> None: ...
    def get_token(self, token_hash: str) -> JoinToken | None: ...
    def redeem_token(self, token_hash: str, now: dt.datetime) -> bool:
        """Mark the token used; True for exactly one caller, only while unexpired."""
        ...


@runtime_checkable
class TokenListing(Protocol):
    """An ability: list join tokens (hashed; never the tokens themselves)."""

    def list_tokens(self) -> list[JoinToken]: ...


@runtime_checkable
class AgentStore(Protocol):
    def record_agent(self, record: AgentRecord) -> AgentRecord:
        """Insert ``record``, or update ``attestation``, ``last_seen`` and ``serial`` of the
        stored one; ``first_seen`` and ``evicted`` of a stored record never change here.
        Returns the record as stored (so a caller sees an eviction that won a race)."""
        ...

    def get_agent(self, spiffe_id: SpiffeId) -> AgentRecord | None: ...
    def list_agents(self) -> list[AgentRecord]: ...
    def evict_agent(self, spiffe_id: SpiffeId) -> bool:
        """Set ``evicted``; False when no record exists. Eviction is never undone here."""
        ...


@runtime_checkable
class AuditLog(Protocol):
    def append_audit(self, record: AuditRecord) -> None: ...
    def append_audits(self, records: Sequence[AuditRecord]) -> None:
        """Store all of ``records`` in one transaction, or none of them (and raise)."""
        ...

    def list_audit(self, limit: int = 100) -> list[AuditRecord]: ...


@runtime_checkable
class CaStore(EntryStore, TokenStore, AgentStore, AuditLog, Protocol):
    def close(self) -> None: ...


@runtime_checkable
class BatchWrites(Protocol):
    """An ability: record agents and append audit rows in one transaction."""

    def write_batch(self, agents: Sequence[AgentRecord], audits: Sequence[AuditRecord]) -> None:
        """As :meth:`AgentStore.record_agent` for each of ``agents``, then
        :meth:`AuditLog.append_audits`, all stored or none (and raise)."""
        ...


# -- abilities of a store shared by CA replicas ----------------------------------------


@dataclass(frozen=True)
class RootRecord:
    """The shared root of a trust domain; the key is encrypted PKCS#8 PEM."""

    trust_domain: str
    root_cert: bytes
    root_key: bytes = field(repr=False)
    refresh_hint: int
    sequence: int = 1


@dataclass(frozen=True)
class SlotRecord:
    """One replica's signing CA and JWT key (keys encrypted PKCS#8 PEM)."""

    replica: str
    id: int
    state: Literal["next", "active", "retired"]
    ca_cert: bytes
    ca_key: bytes = field(repr=False)
    jwt_key: bytes = field(repr=False)
    jwt_public: bytes = b""


@runtime_checkable
class AuthorityRecords(Protocol):
    """The authority in the database, for replicas that share it."""

    def authority_sequence(self) -> int | None:
        """The bundle sequence, bumped by every change; None before ``init``."""
        ...

    def load_authority(self) -> tuple[RootRecord, list[SlotRecord]] | None: ...

    def init_authority(self, root: RootRecord, slots: Sequence[SlotRecord]) -> None:
        """Store a new trust domain's root and first slots; Conflict if one exists."""
        ...

    def save_slots(self, replica: str, slots: Sequence[SlotRecord]) -> int:
        """Replace ``replica``'s slots, bump the sequence; the new sequence."""
        ...

    def acquire_lease(self, name: str, holder: str, now: dt.datetime, seconds: float) -> bool:
        """Hold (or extend) lease ``name`` until ``now + seconds``; False if another has it."""
        ...

    def release_lease(self, name: str, holder: str) -> None: ...


@runtime_checkable
class CallerRates(Protocol):
    """Per-caller token buckets kept in the database (shared by replicas)."""

    def take_token(self, key: str, now: float, rate: float, burst: int) -> bool: ...

    def prune_rates(self, before: float) -> int: ...


@runtime_checkable
class BatchCallerRates(Protocol):
    """An ability: take one token for each of several callers in one transaction."""

    def take_tokens(self, keys: Sequence[str], now: float, rate: float, burst: int) -> list[bool]:
        """As :meth:`CallerRates.take_token` for each key in turn (a key may repeat)."""
        ...
