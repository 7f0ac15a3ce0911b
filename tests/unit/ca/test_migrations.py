"""Schema migrations: checksummed, transactional, refusing a newer database — on both backends."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from ca.errors import SchemaMismatch, SchemaTooNew
from ca.store import postgres_schema
from ca.store.migrations import AppliedMigration, Migration, pending
from ca.store.postgres import PostgresStore
from ca.store.protocol import Entry
from ca.store.sqlite import MIGRATIONS as SQLITE_MIGRATIONS
from ca.store.sqlite import SqliteStore
from meshward.spiffe import SpiffeId

ONE = Migration(1, "one", "CREATE TABLE a (x INTEGER)")
TWO = Migration(2, "two", "CREATE TABLE b (y INTEGER)")


def test_pending_is_what_the_database_lacks() -> None:
    assert pending([ONE, TWO], []) == [ONE, TWO]
    assert pending([ONE, TWO], [AppliedMigration(1, ONE.checksum)]) == [TWO]
    assert (
        pending([ONE, TWO], [AppliedMigration(1, ONE.checksum), AppliedMigration(2, TWO.checksum)])
        == []
    )


def test_newer_database_refused() -> None:
    with pytest.raises(SchemaTooNew):
        pending([ONE], [AppliedMigration(1, ONE.checksum), AppliedMigration(2, "x")])


def test_edited_migration_refused() -> None:
    with pytest.raises(SchemaMismatch):
        pending([ONE, TWO], [AppliedMigration(1, "0" * 64)])


def test_versions_must_be_dense() -> None:
    with pytest.raises(ValueError):
        pending([ONE, Migration(3, "three", "")], [])
    with pytest.raises(ValueError):
        pending([TWO], [])


# -- SQLite ----------------------------------------------------------------------------


def test_sqlite_adopts_a_file_from_before_migrations(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "ca.db")
    db.executescript(SQLITE_MIGRATIONS[0].sql)
    db.execute("INSERT INTO entries VALUES ('e1', 'spiffe://td/a', '[]', NULL, NULL, '[]', 0)")
    db.commit()
    db.close()
    store = SqliteStore(tmp_path / "ca.db")
    entry = store.get_entry("e1")
    assert entry is not None and entry.spiffe_id == SpiffeId.parse("spiffe://td/a")
    store.close()
    rows = sqlite3.connect(tmp_path / "ca.db").execute("SELECT version FROM schema_migrations")
    assert [r[0] for r in rows] == [m.version for m in SQLITE_MIGRATIONS]


def test_sqlite_refuses_a_newer_file(tmp_path: Path) -> None:
    SqliteStore(tmp_path / "ca.db").close()
    db = sqlite3.connect(tmp_path / "ca.db")
    db.execute("INSERT INTO schema_migrations VALUES (99, 'future', 'x', 0)")
    db.commit()
    db.close()
    with pytest.raises(SchemaTooNew):
        SqliteStore(tmp_path / "ca.db")


def test_sqlite_failed_migration_changes_nothing(tmp_path: Path) -> None:
    broken = (
        *SQLITE_MIGRATIONS,
        Migration(len(SQLITE_MIGRATIONS) + 1, "bad", "CREATE TABLE z (a); NONSENSE"),
    )
    with pytest.raises(sqlite3.OperationalError):
        SqliteStore(tmp_path / "ca.db", broken)
    db = sqlite3.connect(tmp_path / "ca.db")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "z" not in tables and "entries" not in tables


# -- PostgreSQL --------------------------------------------------------------------------


def _versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]


def test_postgres_upgrades_an_older_schema(postgres_url: str) -> None:
    old = PostgresStore(postgres_url, migrations=postgres_schema.MIGRATIONS[:1])
    old.add_entry(Entry("e1", SpiffeId.parse("spiffe://td/a"), frozenset({"k8s:ns:a"})))
    old.close()
    assert _versions(postgres_url) == [1]
    store = PostgresStore(postgres_url)
    assert _versions(postgres_url) == [m.version for m in postgres_schema.MIGRATIONS]
    entry = store.get_entry("e1")
    assert entry is not None and entry.selectors == frozenset({"k8s:ns:a"})
    store.close()


def test_postgres_refuses_newer_and_edited_schemas(postgres_url: str) -> None:
    PostgresStore(postgres_url).close()
    edited = (
        Migration(1, "edited", postgres_schema.MIGRATIONS[0].sql + " "),
        *postgres_schema.MIGRATIONS[1:],
    )
    with pytest.raises(SchemaMismatch):
        PostgresStore(postgres_url, migrations=edited)
    with pytest.raises(SchemaTooNew):
        PostgresStore(postgres_url, migrations=postgres_schema.MIGRATIONS[:1])


def test_postgres_failed_migration_changes_nothing(postgres_url: str) -> None:
    broken = (
        *postgres_schema.MIGRATIONS,
        Migration(len(postgres_schema.MIGRATIONS) + 1, "bad", "CREATE TABLE z (a INT); NONSENSE"),
    )
    with pytest.raises(psycopg.errors.SyntaxError):
        PostgresStore(postgres_url, migrations=broken)
    with psycopg.connect(postgres_url) as conn:
        tables = {
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
    assert "z" not in tables and "entries" not in tables
