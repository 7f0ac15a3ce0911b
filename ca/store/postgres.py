"""The CA store on PostgreSQL (psycopg 3 with a connection pool), for CA replicas.

Every method is one transaction on a pooled connection (a single statement
in autocommit, one round trip; several in an explicit transaction). A database that
cannot be reached (down, restarting, pool exhausted past
``timeout``) raises :class:`~ca.errors.StoreUnavailable`, which the API
answers with 503; the pool reconnects by itself when the database is back.
Join-token redemption is a single conditional ``UPDATE``: exactly one of any
number of concurrent redemptions, from any replica, succeeds. The schema is
migrated at start-up (:mod:`ca.store.migrations`, under an advisory lock, so
replicas starting together migrate once).

The URL (``postgresql://USER:PASSWORD@HOST:PORT/DB?sslmode=…``) is handed to
libpq as is (TLS options: ``sslmode``, ``sslrootcert``, ``sslcert``,
``sslkey``); it appears in logs and errors only through
:func:`meshward.logs.redact_url`.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg_pool

from ca.errors import Conflict, StoreUnavailable
from ca.store.migrations import AppliedMigration, Migration, migrate
from ca.store.postgres_schema import MIGRATIONS
from ca.store.protocol import (
    AgentRecord,
    AuditRecord,
    AuthorityRecords,
    CallerRates,
    CaStore,
    Entry,
    JoinToken,
    RootRecord,
    SlotRecord,
    TokenListing,
)
from ca.store.sql import POSTGRES, StoreSql
from meshward.logs import redact_url
from meshward.spiffe import SpiffeId

__all__ = ["PostgresStore"]

log = logging.getLogger("meshward.ca.store")

# pg_advisory_xact_lock keys (any two distinct 64-bit numbers of our own).
MIGRATION_LOCK = 0x6D657368_0001

_Unavailable = (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout)


_SQL = StoreSql.of(POSTGRES)


class _Target:
    """The migration runner's view of one PostgreSQL transaction."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def applied(self) -> list[AppliedMigration]:
        self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
            " name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
        )
        rows = self.conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
        return [AppliedMigration(int(v), str(c)) for v, c in rows]

    def apply(self, migration: Migration) -> None:
        for statement in migration.statements():
            self.conn.execute(statement.encode("utf-8"))
        self.conn.execute(
            "INSERT INTO schema_migrations VALUES (%s, %s, %s, now())",
            (migration.version, migration.name, migration.checksum),
        )


class PostgresStore:
    """Entries, join tokens, audit — and the replicas' shared authority — in PostgreSQL."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        timeout: float = 5.0,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        self.safe_url = redact_url(url)
        self.timeout = timeout
        self._pool = psycopg_pool.ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            timeout=timeout,
            # The pool's reconnection backoff doubles without a cap (1, 2, 4, 8…
            # seconds): after a long outage the next try could come as long after
            # the database is back. Give up a reconnection after `timeout`; the
            # next request starts a fresh one, so the CA recovers within about
            # `timeout` of the database's return, whatever the outage lasted.
            reconnect_timeout=timeout,
            open=False,
            name="meshward-ca",
            # Autocommit: a one-statement method is one round trip (no BEGIN/COMMIT);
            # the methods of several statements open a transaction (_tx(atomic=True)).
            # connect_timeout: a database host that drops packets must not hold a
            # pool worker for the kernel's SYN retries (minutes); libpq counts it in
            # whole seconds, 2 at least.
            kwargs={
                "options": "-c timezone=UTC",
                "autocommit": True,
                "connect_timeout": max(2, math.ceil(timeout)),
            },
        )
        try:
            self._pool.open(wait=True, timeout=timeout)
        except _Unavailable as exc:
            self._pool.close()
            raise StoreUnavailable(f"cannot reach the CA database {self.safe_url}") from exc
        try:
            with self._tx(atomic=True) as conn:
                applied = migrate(_Target(conn), migrations)
        except BaseException:
            self._pool.close()
            raise
        if applied:
            log.info("CA database migrated", extra={"fields": {"versions": applied}})

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def _tx(self, atomic: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; ``atomic``: one transaction, committed unless the block raises."""
        try:
            with self._pool.connection(timeout=self.timeout) as conn:
                if atomic:
                    with conn.transaction():
                        yield conn
                else:
                    yield conn
        except _Unavailable as exc:
            raise StoreUnavailable("the CA database is unavailable") from exc

    # -- entries ----------------------------------------------------------------

    def add_entry(self, entry: Entry) -> None:
        try:
            with self._tx() as conn:
                conn.execute(_SQL.entries_insert, _SQL.entry_params(entry))
        except psycopg.errors.UniqueViolation as exc:
            raise Conflict(f"entry {entry.id} exists") from exc

    def get_entry(self, entry_id: str) -> Entry | None:
        with self._tx() as conn:
            row = conn.execute(_SQL.entries_get, (entry_id,)).fetchone()
        return None if row is None else _SQL.entry(row)

    def list_entries(self) -> list[Entry]:
        with self._tx() as conn:
            rows = conn.execute(_SQL.entries_list).fetchall()
        return [_SQL.entry(r) for r in rows]

    def remove_entry(self, entry_id: str) -> bool:
        with self._tx() as conn:
            cur = conn.execute(_SQL.entries_remove, (entry_id,))
        return cur.rowcount == 1

    def entries_for(self, spiffe_id: SpiffeId) -> list[Entry]:
        with self._tx() as conn:
            rows = conn.execute(_SQL.entries_for, (str(spiffe_id),)).fetchall()
        return [_SQL.entry(r) for r in rows]

    # -- join tokens ------------------------------------------------------------

    def add_token(self, token: JoinToken) -> None:
        try:
            with self._tx() as conn:
                conn.execute(_SQL.join_tokens_insert, _SQL.token_params(token))
        except psycopg.errors.UniqueViolation as exc:
            raise Conflict("token exists") from exc

    def get_token(self, token_hash: str) -> JoinToken | None:
        with self._tx() as conn:
            row = conn.execute(_SQL.join_tokens_get, (token_hash,)).fetchone()
        return None if row is None else _SQL.token(row)

    def list_tokens(self) -> list[JoinToken]:
        with self._tx() as conn:
            rows = conn.execute(_SQL.join_tokens_list).fetchall()
        return [_SQL.token(r) for r in rows]

    def redeem_token(self, token_hash: str, now: dt.datetime) -> bool:
        with self._tx() as conn:
            cur = conn.execute(_SQL.join_tokens_redeem, _SQL.redeem_params(token_hash, now))
        return cur.rowcount == 1

    # -- agents -----------------------------------------------------------------

    def record_agent(self, record: AgentRecord) -> AgentRecord:
        with self._tx() as conn:
            row = conn.execute(_SQL.agents_record, _SQL.agent_params(record)).fetchone()
        if row is None:
            raise StoreUnavailable("the agent record was not written")
        return _SQL.agent(row)

    def get_agent(self, spiffe_id: SpiffeId) -> AgentRecord | None:
        with self._tx() as conn:
            row = conn.execute(_SQL.agents_get, (str(spiffe_id),)).fetchone()
        return None if row is None else _SQL.agent(row)

    def list_agents(self) -> list[AgentRecord]:
        with self._tx() as conn:
            rows = conn.execute(_SQL.agents_list).fetchall()
        return [_SQL.agent(r) for r in rows]

    def evict_agent(self, spiffe_id: SpiffeId) -> bool:
        with self._tx() as conn:
            cur = conn.execute(_SQL.agents_evict, (True, str(spiffe_id)))
        return cur.rowcount == 1

    # -- audit ------------------------------------------------------------------

    def append_audit(self, record: AuditRecord) -> None:
        self.append_audits([record])

    def append_audits(self, records: Sequence[AuditRecord]) -> None:
        rows = [_SQL.audit_params(r) for r in records]
        with self._tx(atomic=True) as conn, conn.cursor() as cur:
            cur.executemany(_SQL.audit_append, rows)

    def list_audit(self, limit: int = 100) -> list[AuditRecord]:
        with self._tx() as conn:
            rows = conn.execute(_SQL.audit_list, (limit,)).fetchall()
        return [_SQL.audit(r) for r in reversed(rows)]

    # -- the shared authority (AuthorityRecords) ----------------------------------

    def authority_sequence(self) -> int | None:
        with self._tx() as conn:
            row = conn.execute("SELECT sequence FROM ca_root WHERE id = 1").fetchone()
        return None if row is None else int(row[0])

    def load_authority(self) -> tuple[RootRecord, list[SlotRecord]] | None:
        with self._tx(atomic=True) as conn:
            root = conn.execute(
                "SELECT trust_domain, root_cert, root_key, refresh_hint, sequence FROM ca_root"
                " WHERE id = 1"
            ).fetchone()
            rows = conn.execute(
                "SELECT replica, id, state, ca_cert, ca_key, jwt_key, jwt_public FROM ca_slots"
                " ORDER BY replica, id"
            ).fetchall()
        if root is None:
            return None
        record = RootRecord(root[0], root[1].encode(), root[2].encode(), root[3], int(root[4]))
        slots = [
            SlotRecord(
                r[0], int(r[1]), r[2], r[3].encode(), r[4].encode(), r[5].encode(), r[6].encode()
            )
            for r in rows
        ]
        return record, slots

    @staticmethod
    def _insert_slots(conn: psycopg.Connection[Any], slots: Sequence[SlotRecord]) -> None:
        for s in slots:
            conn.execute(
                "INSERT INTO ca_slots VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    s.replica,
                    s.id,
                    s.state,
                    s.ca_cert.decode(),
                    s.ca_key.decode(),
                    s.jwt_key.decode(),
                    s.jwt_public.decode(),
                ),
            )

    def init_authority(self, root: RootRecord, slots: Sequence[SlotRecord]) -> None:
        try:
            with self._tx(atomic=True) as conn:
                conn.execute(
                    "INSERT INTO ca_root VALUES (1, %s, %s, %s, %s, %s)",
                    (
                        root.trust_domain,
                        root.root_cert.decode(),
                        root.root_key.decode(),
                        root.refresh_hint,
                        root.sequence,
                    ),
                )
                self._insert_slots(conn, slots)
        except psycopg.errors.UniqueViolation as exc:
            raise Conflict("this database already holds a CA", code="already_initialized") from exc

    def save_slots(self, replica: str, slots: Sequence[SlotRecord]) -> int:
        with self._tx(atomic=True) as conn:
            # The root row is the lock that serialises every change of the authority.
            row = conn.execute("SELECT sequence FROM ca_root WHERE id = 1 FOR UPDATE").fetchone()
            if row is None:
                raise Conflict("no CA in this database", code="not_initialized")
            conn.execute("DELETE FROM ca_slots WHERE replica = %s", (replica,))
            self._insert_slots(conn, slots)
            sequence = int(row[0]) + 1
            conn.execute("UPDATE ca_root SET sequence = %s WHERE id = 1", (sequence,))
        return sequence

    def acquire_lease(self, name: str, holder: str, now: dt.datetime, seconds: float) -> bool:
        until = now + dt.timedelta(seconds=seconds)
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO ca_leases AS l VALUES (%s, %s, %s) ON CONFLICT (name) DO UPDATE"
                " SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at"
                " WHERE l.holder = EXCLUDED.holder OR l.expires_at <= %s",
                (name, holder, until, now),
            )
        return cur.rowcount == 1

    def release_lease(self, name: str, holder: str) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM ca_leases WHERE name = %s AND holder = %s", (name, holder))

    # -- per-caller rates (CallerRates) ---------------------------------------------

    def take_token(self, key: str, now: float, rate: float, burst: int) -> bool:
        """One token bucket per caller, refilled at ``rate``/s up to ``burst``, in one statement."""
        with self._tx() as conn:
            row = conn.execute(
                "INSERT INTO rate_buckets AS b VALUES (%(k)s, %(burst)s - 1, %(now)s)"
                " ON CONFLICT (key) DO UPDATE SET"
                " tokens = LEAST(%(burst)s,"
                "  b.tokens + GREATEST(0, %(now)s - b.stamp) * %(rate)s) - 1,"
                " stamp = GREATEST(b.stamp, %(now)s)"
                " WHERE LEAST(%(burst)s, b.tokens + GREATEST(0, %(now)s - b.stamp) * %(rate)s) >= 1"
                " RETURNING tokens",
                {"k": key, "now": now, "rate": rate, "burst": float(burst)},
            ).fetchone()
        return row is not None

    def prune_rates(self, before: float) -> int:
        with self._tx() as conn:
            cur = conn.execute(_SQL.rate_buckets_prune, (before,))
        return cur.rowcount


# The PostgreSQL store satisfies the protocols (checked by mypy here and at import).
for _protocol in (CaStore, TokenListing, AuthorityRecords, CallerRates):
    if not issubclass(PostgresStore, _protocol):
        raise TypeError(f"PostgresStore does not satisfy {_protocol.__name__}")
_check: type[CaStore] = PostgresStore
_check_authority: type[AuthorityRecords] = PostgresStore
_check_rates: type[CallerRates] = PostgresStore
