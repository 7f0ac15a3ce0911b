"""The throw-away PostgreSQL server lives with the benchmarks (which need it too)."""

from bench._postgres import PG_BIN, PostgresServer, postgres_server

__all__ = ["PG_BIN", "PostgresServer", "postgres_server"]
