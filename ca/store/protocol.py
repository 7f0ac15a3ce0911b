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
    "AuditLog",
    "AuditRecord",
    "AuthorityRecords",
    "CaStore",
    "CallerRates",
    "Entry",
    "EntryStore",
    "JoinToken",
    "RootRecord",
    "SlotRecord",
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
class AuditLog(Protocol):
    def append_audit(self, record: AuditRecord) -> None: ...
    def list_audit(self, limit: int = 100) -> list[AuditRecord]: ...


@runtime_checkable
class CaStore(EntryStore, TokenStore, AuditLog, Protocol):
    def close(self) -> None: ...


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
