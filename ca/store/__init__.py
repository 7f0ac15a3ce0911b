"""Where the CA keeps registration entries, join tokens and its audit trail."""

from ca.store.protocol import (
    AgentRecord,
    AgentStore,
    AuditLog,
    AuditRecord,
    CaStore,
    Entry,
    EntryStore,
    JoinToken,
    TokenStore,
)

__all__ = [
    "AgentRecord",
    "AgentStore",
    "AuditLog",
    "AuditRecord",
    "CaStore",
    "Entry",
    "EntryStore",
    "JoinToken",
    "TokenStore",
]
