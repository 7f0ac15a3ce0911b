"""Versioned schema migrations, shared by every store backend.

A backend lists its migrations (version, name, SQL) in order and hands them,
with a small :class:`MigrationTarget` adapter over its connection, to
:func:`migrate` at start-up. The runner:

- keeps one row per applied migration in ``schema_migrations`` (version,
  name, SHA-256 of the SQL, time applied);
- refuses a database that has a migration the code does not know (a newer
  schema: :class:`SchemaTooNew`) or whose recorded checksum differs from the
  code's (an edited migration: :class:`SchemaMismatch`);
- applies the pending migrations in one transaction, under a lock that
  serialises replicas starting together (PostgreSQL: a transaction-scoped
  advisory lock; SQLite: ``BEGIN IMMEDIATE``), so a failure leaves the
  schema as it was.

A migration, once released, is never edited: a change is a new migration.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ca.errors import SchemaMismatch, SchemaTooNew

__all__ = ["AppliedMigration", "Migration", "MigrationTarget", "migrate", "pending"]


@dataclass(frozen=True)
class Migration:
    """One step of a backend's schema; ``sql`` may hold several statements."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()

    def statements(self) -> list[str]:
        """The statements of ``sql`` (none of ours has ``;`` inside a literal)."""
        return [s.strip() for s in self.sql.split(";") if s.strip()]


@dataclass(frozen=True)
class AppliedMigration:
    version: int
    checksum: str


class MigrationTarget(Protocol):
    """What the runner needs from a backend, inside one locked transaction."""

    def applied(self) -> list[AppliedMigration]:
        """Create ``schema_migrations`` if missing; return its rows."""
        ...

    def apply(self, migration: Migration) -> None:
        """Run the migration's SQL and record it (same transaction)."""
        ...


def pending(known: Sequence[Migration], applied: Sequence[AppliedMigration]) -> list[Migration]:
    """The migrations to run, after checking the database against the code (pure)."""
    versions = [m.version for m in known]
    if versions != list(range(1, len(versions) + 1)) or not versions:
        raise ValueError("migration versions must be 1, 2, … without gaps or repeats")
    by_version = {m.version: m for m in known}
    newest = versions[-1]
    for row in applied:
        if row.version > newest:
            raise SchemaTooNew(
                f"the database has schema version {row.version}; this meshward knows up to "
                f"{newest}: upgrade meshward before using this database"
            )
        migration = by_version.get(row.version)
        if migration is None or migration.checksum != row.checksum:
            raise SchemaMismatch(
                f"schema migration {row.version} in the database differs from the code's"
            )
    done = {row.version for row in applied}
    return [m for m in known if m.version not in done]


def migrate(target: MigrationTarget, known: Sequence[Migration]) -> list[int]:
    """Bring the schema up to date; the versions applied now (the caller commits)."""
    todo = pending(known, target.applied())
    for migration in todo:
        target.apply(migration)
    return [m.version for m in todo]
