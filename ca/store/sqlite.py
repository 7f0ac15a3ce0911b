"""The CA store on SQLite (stdlib), the embedded default.

One connection guarded by a lock serves the threads of one process; several
processes (``meshward ca serve`` and the CLI) share the file through SQLite's
own locking (WAL, busy timeout). Join-token redemption is a single
conditional ``UPDATE``, so exactly one of any number of concurrent
redemptions succeeds. The schema is versioned (:mod:`ca.store.migrations`);
migration 1 adopts a file made before migrations existed.

A database that cannot be used — locked by another process past the busy
timeout, a disk I/O error, a file gone — raises
:class:`~ca.errors.StoreUnavailable` (the API answers 503), as the
PostgreSQL store does when its server is away.
"""

from __future__ import annotations

import datetime as dt
import functools
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ca.errors import Conflict, StoreUnavailable
from ca.store.migrations import AppliedMigration, Migration, migrate
from ca.store.protocol import (
    AgentRecord,
    AuditRecord,
    BatchCallerRates,
    BatchWrites,
    CallerRates,
    CaStore,
    Entry,
    JoinToken,
    TokenListing,
)
from ca.store.sql import SQLITE, StoreSql
from meshward.spiffe import SpiffeId

__all__ = ["MIGRATIONS", "SqliteStore"]

_INITIAL = """
CREATE TABLE IF NOT EXISTS entries (
    id TEXT PRIMARY KEY,
    spiffe_id TEXT NOT NULL,
    selectors TEXT NOT NULL,
    x509_ttl INTEGER,
    jwt_ttl INTEGER,
    dns_names TEXT NOT NULL,
    admin INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_spiffe_id ON entries (spiffe_id);
CREATE TABLE IF NOT EXISTS join_tokens (
    token_hash TEXT PRIMARY KEY,
    spiffe_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    action TEXT NOT NULL,
    method TEXT NOT NULL,
    caller TEXT NOT NULL,
    result TEXT NOT NULL,
    spiffe_id TEXT,
    serial TEXT,
    not_after REAL,
    detail TEXT
);
"""

_RATES = """
CREATE TABLE rate_buckets (
    key TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    stamp REAL NOT NULL
)
"""

# IF NOT EXISTS: a file written before migrations existed may already have it.
_AGENTS = """
CREATE TABLE IF NOT EXISTS agents (
    spiffe_id TEXT PRIMARY KEY,
    attestation TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    serial TEXT,
    evicted INTEGER NOT NULL DEFAULT 0
)
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "entries, join tokens, audit", _INITIAL),
    Migration(2, "rate buckets shared by ca serve workers", _RATES),
    Migration(3, "node agents: node ID, attestation, last seen, evicted", _AGENTS),
)


class _Target:
    """The migration runner's view of one SQLite connection inside a transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def applied(self) -> list[AppliedMigration]:
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
            " name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        rows = self.db.execute("SELECT version, checksum FROM schema_migrations").fetchall()
        return [AppliedMigration(int(v), str(c)) for v, c in rows]

    def apply(self, migration: Migration) -> None:
        for statement in migration.statements():
            self.db.execute(statement)
        self.db.execute(
            "INSERT INTO schema_migrations VALUES (?, ?, ?, julianday('now'))",
            (migration.version, migration.name, migration.checksum),
        )


_SQL = StoreSql.of(SQLITE)

# A token from a caller's bucket (refilled at :rate/s up to :burst), in one statement.
_TAKE_ONE = (
    "INSERT INTO rate_buckets AS b VALUES (:k, :burst - 1, :now)"
    " ON CONFLICT (key) DO UPDATE SET"
    " tokens = MIN(:burst, b.tokens + MAX(0, :now - b.stamp) * :rate) - 1,"
    " stamp = MAX(b.stamp, :now)"
    " WHERE MIN(:burst, b.tokens + MAX(0, :now - b.stamp) * :rate) >= 1"
    " RETURNING tokens"
)


def _take_params(key: str, now: float, rate: float, burst: int) -> dict[str, object]:
    return {"k": key, "now": now, "rate": rate, "burst": float(burst)}


class SqliteStore:
    """Entries, join tokens and audit in one SQLite file."""

    def __init__(
        self,
        path: Path | str,
        migrations: tuple[Migration, ...] = MIGRATIONS,
        busy_timeout: float = 30.0,
    ) -> None:
        """``busy_timeout``: seconds a statement waits for another process's write lock."""
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # An entry from its row: the same row (every column equal) is the same frozen
        # value, so an issuance reading its entries does not parse them again.
        self._entry = functools.lru_cache(maxsize=4096)(_SQL.entry)
        self._db = sqlite3.connect(
            str(path), timeout=busy_timeout, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        # WAL + NORMAL: a commit survives a crash of the process; only a power
        # loss may drop the last transactions (no fsync per audit row).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            migrate(_Target(self._db), migrations)
        except BaseException:
            self._db.execute("ROLLBACK")
            self._db.close()
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The connection, for this thread alone; a database that cannot be used is unavailable."""
        with self._lock:
            try:
                yield
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable("the CA database is unavailable") from exc

    # -- entries ----------------------------------------------------------------

    def add_entry(self, entry: Entry) -> None:
        with self._locked():
            try:
                self._db.execute(_SQL.entries_insert, _SQL.entry_params(entry))
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"entry {entry.id} exists") from exc

    def get_entry(self, entry_id: str) -> Entry | None:
        with self._locked():
            row = self._db.execute(_SQL.entries_get, (entry_id,)).fetchone()
        return None if row is None else self._entry(row)

    def list_entries(self) -> list[Entry]:
        with self._locked():
            rows = self._db.execute(_SQL.entries_list).fetchall()
        return [self._entry(r) for r in rows]

    def remove_entry(self, entry_id: str) -> bool:
        with self._locked():
            cur = self._db.execute(_SQL.entries_remove, (entry_id,))
        return cur.rowcount == 1

    def entries_for(self, spiffe_id: SpiffeId) -> list[Entry]:
        with self._locked():
            rows = self._db.execute(_SQL.entries_for, (str(spiffe_id),)).fetchall()
        return [self._entry(r) for r in rows]

    # -- join tokens ------------------------------------------------------------

    def add_token(self, token: JoinToken) -> None:
        with self._locked():
            try:
                self._db.execute(_SQL.join_tokens_insert, _SQL.token_params(token))
            except sqlite3.IntegrityError as exc:
                raise Conflict("token exists") from exc

    def get_token(self, token_hash: str) -> JoinToken | None:
        with self._locked():
            row = self._db.execute(_SQL.join_tokens_get, (token_hash,)).fetchone()
        return None if row is None else _SQL.token(row)

    def list_tokens(self) -> list[JoinToken]:
        with self._locked():
            rows = self._db.execute(_SQL.join_tokens_list).fetchall()
        return [_SQL.token(r) for r in rows]

    def redeem_token(self, token_hash: str, now: dt.datetime) -> bool:
        with self._locked():
            cur = self._db.execute(_SQL.join_tokens_redeem, _SQL.redeem_params(token_hash, now))
        return cur.rowcount == 1

    # -- agents -----------------------------------------------------------------

    def record_agent(self, record: AgentRecord) -> AgentRecord:
        with self._locked():
            row = self._db.execute(_SQL.agents_record, _SQL.agent_params(record)).fetchone()
        return _SQL.agent(row)

    def get_agent(self, spiffe_id: SpiffeId) -> AgentRecord | None:
        with self._locked():
            row = self._db.execute(_SQL.agents_get, (str(spiffe_id),)).fetchone()
        return None if row is None else _SQL.agent(row)

    def list_agents(self) -> list[AgentRecord]:
        with self._locked():
            rows = self._db.execute(_SQL.agents_list).fetchall()
        return [_SQL.agent(r) for r in rows]

    def evict_agent(self, spiffe_id: SpiffeId) -> bool:
        with self._locked():
            cur = self._db.execute(_SQL.agents_evict, (True, str(spiffe_id)))
        return cur.rowcount == 1

    # -- audit ------------------------------------------------------------------

    def append_audit(self, record: AuditRecord) -> None:
        self.append_audits([record])

    def append_audits(self, records: Sequence[AuditRecord]) -> None:
        self.write_batch((), records)

    def write_batch(self, agents: Sequence[AgentRecord], audits: Sequence[AuditRecord]) -> None:
        rows = [_SQL.audit_params(r) for r in audits]
        with self._locked():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for agent in agents:
                    self._db.execute(_SQL.agents_record, _SQL.agent_params(agent)).fetchall()
                self._db.executemany(_SQL.audit_append, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def list_audit(self, limit: int = 100) -> list[AuditRecord]:
        with self._locked():
            rows = self._db.execute(_SQL.audit_list, (limit,)).fetchall()
        return [_SQL.audit(r) for r in reversed(rows)]

    # -- per-caller rates (CallerRates; used by ``ca serve --workers N``) ----------

    def take_token(self, key: str, now: float, rate: float, burst: int) -> bool:
        """One token bucket per caller, refilled at ``rate``/s up to ``burst``, in one statement."""
        with self._locked():
            row = self._db.execute(_TAKE_ONE, _take_params(key, now, rate, burst)).fetchone()
        return row is not None

    def take_tokens(self, keys: Sequence[str], now: float, rate: float, burst: int) -> list[bool]:
        """:meth:`take_token` for each key, in one transaction (one commit for them all)."""
        with self._locked():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                taken = [
                    self._db.execute(_TAKE_ONE, _take_params(k, now, rate, burst)).fetchone()
                    is not None
                    for k in keys
                ]
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return taken

    def prune_rates(self, before: float) -> int:
        with self._locked():
            cur = self._db.execute(_SQL.rate_buckets_prune, (before,))
        return cur.rowcount


# The SQLite store satisfies the protocols (checked by mypy here and at import).
for _protocol in (CaStore, TokenListing, CallerRates, BatchCallerRates, BatchWrites):
    if not issubclass(SqliteStore, _protocol):
        raise TypeError(f"SqliteStore does not satisfy {_protocol.__name__}")
_check: type[CaStore] = SqliteStore
_check_rates: type[CallerRates] = SqliteStore
