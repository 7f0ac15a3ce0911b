"""Where the CA keeps registration entries, join tokens and its audit trail."""

from ca.store.protocol import (
    AuditLog,
    AuditRecord,
    CaStore,
    Entry,
    EntryStore,
    JoinToken,
    TokenStore,
)

__all__ = ["AuditLog", "AuditRecord", "CaStore", "Entry", "EntryStore", "JoinToken", "TokenStore"]
