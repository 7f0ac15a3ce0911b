"""The CA store's schema on PostgreSQL, as ordered migrations (never edit a released one)."""

from __future__ import annotations

from ca.store.migrations import Migration

__all__ = ["MIGRATIONS"]

_INITIAL = """
CREATE TABLE entries (
    id TEXT PRIMARY KEY,
    spiffe_id TEXT NOT NULL,
    selectors TEXT[] NOT NULL,
    x509_ttl INTEGER,
    jwt_ttl INTEGER,
    dns_names TEXT[] NOT NULL,
    admin BOOLEAN NOT NULL
);
CREATE INDEX entries_spiffe_id ON entries (spiffe_id);
CREATE TABLE join_tokens (
    token_hash TEXT PRIMARY KEY,
    spiffe_id TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ
);
CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    time TIMESTAMPTZ NOT NULL,
    action TEXT NOT NULL,
    method TEXT NOT NULL,
    caller TEXT NOT NULL,
    result TEXT NOT NULL,
    spiffe_id TEXT,
    serial TEXT,
    not_after TIMESTAMPTZ,
    detail TEXT
);
"""

# One trust domain served by several replicas: the shared root, each
# replica's signing CAs (keys encrypted with the CA passphrase, as on disk),
# the bundle sequence, the rotation lease and the per-caller rate buckets.
_REPLICAS = """
CREATE TABLE ca_root (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    trust_domain TEXT NOT NULL,
    root_cert TEXT NOT NULL,
    root_key TEXT NOT NULL,
    refresh_hint INTEGER NOT NULL,
    sequence BIGINT NOT NULL
);
CREATE TABLE ca_slots (
    replica TEXT NOT NULL,
    id BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('next', 'active', 'retired')),
    ca_cert TEXT NOT NULL,
    ca_key TEXT NOT NULL,
    jwt_key TEXT NOT NULL,
    jwt_public TEXT NOT NULL,
    PRIMARY KEY (replica, id)
);
CREATE UNIQUE INDEX ca_slots_one_active ON ca_slots (replica) WHERE state = 'active';
CREATE UNIQUE INDEX ca_slots_one_next ON ca_slots (replica) WHERE state = 'next';
CREATE TABLE ca_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE rate_buckets (
    key TEXT PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    stamp DOUBLE PRECISION NOT NULL
)
"""

_AGENTS = """
CREATE TABLE agents (
    spiffe_id TEXT PRIMARY KEY,
    attestation TEXT NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL,
    serial TEXT,
    evicted BOOLEAN NOT NULL DEFAULT FALSE
)
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "entries, join tokens, audit", _INITIAL),
    Migration(2, "replicas: shared root, signing CAs, leases, rate buckets", _REPLICAS),
    Migration(3, "node agents: node ID, attestation, last seen, evicted", _AGENTS),
)
