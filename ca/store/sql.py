"""The SQL the SQLite and PostgreSQL stores share: statements and row mapping.

The two dialects agree on the tables' columns and on every statement here
but for the parameter marker (``?`` / ``%s``) and how three kinds of value are
stored: SQLite keeps times as Unix seconds (``REAL``), string lists as JSON
text and booleans as 0/1; PostgreSQL has ``TIMESTAMPTZ``, ``TEXT[]`` and
``BOOLEAN``. :data:`SQLITE` and :data:`POSTGRES` say those; a
:class:`StoreSql` renders the statements once for its dialect and maps
values to parameters and rows back to values. What the dialects do not share
(connections, locking, migrations, the rate bucket's ``MIN``/``LEAST``, the
replicas' shared authority) stays in each store.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from ca.store.protocol import AgentRecord, AuditRecord, Entry, JoinToken
from meshward.spiffe import SpiffeId

__all__ = ["POSTGRES", "SQLITE", "Dialect", "Statements", "StoreSql"]


@dataclass(frozen=True, kw_only=True)
class Statements:
    """Every shared statement, written with ``?`` markers (the defaults)."""

    entries_insert: str = (
        "INSERT INTO entries"
        " (id, spiffe_id, selectors, x509_ttl, jwt_ttl, dns_names, admin)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    entries_get: str = (
        "SELECT id, spiffe_id, selectors, x509_ttl, jwt_ttl, dns_names, admin"
        " FROM entries WHERE id = ?"
    )
    entries_list: str = (
        "SELECT id, spiffe_id, selectors, x509_ttl, jwt_ttl, dns_names, admin"
        " FROM entries ORDER BY spiffe_id, id"
    )
    entries_for: str = (
        "SELECT id, spiffe_id, selectors, x509_ttl, jwt_ttl, dns_names, admin"
        " FROM entries WHERE spiffe_id = ? ORDER BY id"
    )
    entries_remove: str = "DELETE FROM entries WHERE id = ?"
    join_tokens_insert: str = (
        "INSERT INTO join_tokens (token_hash, spiffe_id, expires_at, used_at) VALUES (?, ?, ?, ?)"
    )
    join_tokens_get: str = (
        "SELECT token_hash, spiffe_id, expires_at, used_at FROM join_tokens WHERE token_hash = ?"
    )
    join_tokens_list: str = (
        "SELECT token_hash, spiffe_id, expires_at, used_at FROM join_tokens ORDER BY expires_at"
    )
    join_tokens_redeem: str = (
        "UPDATE join_tokens SET used_at = ?"
        " WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?"
    )
    agents_record: str = (
        "INSERT INTO agents (spiffe_id, attestation, first_seen, last_seen, serial)"
        " VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (spiffe_id) DO UPDATE SET attestation = excluded.attestation,"
        " last_seen = excluded.last_seen, serial = excluded.serial"
        " RETURNING spiffe_id, attestation, first_seen, last_seen, serial, evicted"
    )
    agents_get: str = (
        "SELECT spiffe_id, attestation, first_seen, last_seen, serial, evicted"
        " FROM agents WHERE spiffe_id = ?"
    )
    agents_list: str = (
        "SELECT spiffe_id, attestation, first_seen, last_seen, serial, evicted"
        " FROM agents ORDER BY spiffe_id"
    )
    agents_evict: str = "UPDATE agents SET evicted = ? WHERE spiffe_id = ?"
    audit_append: str = (
        "INSERT INTO audit (time, action, method, caller, result, spiffe_id, serial,"
        " not_after, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    audit_list: str = (
        "SELECT time, action, method, caller, result, spiffe_id, serial, not_after,"
        " detail, id FROM audit ORDER BY id DESC LIMIT ?"
    )
    rate_buckets_prune: str = "DELETE FROM rate_buckets WHERE stamp < ?"


@dataclass(frozen=True)
class Dialect:
    """How one database spells a parameter and stores times and string lists."""

    param: str
    time_param: Callable[[dt.datetime], Any]
    time_value: Callable[[Any], dt.datetime]
    strings_param: Callable[[list[str]], Any]
    strings_value: Callable[[Any], Sequence[str]]


def _utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC)


def _from_timestamp(value: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(value, dt.UTC)


def _timestamp(value: dt.datetime) -> float:
    return value.timestamp()


SQLITE = Dialect("?", _timestamp, _from_timestamp, json.dumps, json.loads)
POSTGRES = Dialect("%s", _utc, _utc, list, list)


@dataclass(frozen=True, kw_only=True)
class StoreSql(Statements):
    """The shared statements with ``dialect``'s marker, and the row mapping."""

    dialect: Dialect

    @classmethod
    def of(cls, dialect: Dialect) -> StoreSql:
        rendered = {f.name: str(f.default).replace("?", dialect.param) for f in fields(Statements)}
        return cls(dialect=dialect, **rendered)

    # -- values to parameters ------------------------------------------------------

    def _time(self, value: dt.datetime | None) -> Any:
        return None if value is None else self.dialect.time_param(value)

    def entry_params(self, entry: Entry) -> tuple[Any, ...]:
        strings = self.dialect.strings_param
        return (
            entry.id,
            str(entry.spiffe_id),
            strings(sorted(entry.selectors)),
            entry.x509_ttl,
            entry.jwt_ttl,
            strings(list(entry.dns_names)),
            entry.admin,
        )

    def token_params(self, token: JoinToken) -> tuple[Any, ...]:
        return (
            token.token_hash,
            str(token.spiffe_id),
            self._time(token.expires_at),
            self._time(token.used_at),
        )

    def redeem_params(self, token_hash: str, now: dt.datetime) -> tuple[Any, ...]:
        return (self._time(now), token_hash, self._time(now))

    def agent_params(self, record: AgentRecord) -> tuple[Any, ...]:
        return (
            str(record.spiffe_id),
            record.attestation,
            self._time(record.first_seen),
            self._time(record.last_seen),
            record.serial,
        )

    def audit_params(self, record: AuditRecord) -> tuple[Any, ...]:
        return (
            self._time(record.time),
            record.action,
            record.method,
            record.caller,
            record.result,
            record.spiffe_id,
            record.serial,
            self._time(record.not_after),
            record.detail,
        )

    # -- rows to values ------------------------------------------------------------

    def _optional_time(self, value: Any) -> dt.datetime | None:
        return None if value is None else self.dialect.time_value(value)

    def entry(self, row: Sequence[Any]) -> Entry:
        strings = self.dialect.strings_value
        return Entry(
            id=row[0],
            spiffe_id=SpiffeId.parse(row[1]),
            selectors=frozenset(strings(row[2])),
            x509_ttl=row[3],
            jwt_ttl=row[4],
            dns_names=tuple(strings(row[5])),
            admin=bool(row[6]),
        )

    def token(self, row: Sequence[Any]) -> JoinToken:
        return JoinToken(
            row[0],
            SpiffeId.parse(row[1]),
            self.dialect.time_value(row[2]),
            self._optional_time(row[3]),
        )

    def agent(self, row: Sequence[Any]) -> AgentRecord:
        return AgentRecord(
            spiffe_id=SpiffeId.parse(row[0]),
            attestation=row[1],
            first_seen=self.dialect.time_value(row[2]),
            last_seen=self.dialect.time_value(row[3]),
            serial=row[4],
            evicted=bool(row[5]),
        )

    def audit(self, row: Sequence[Any]) -> AuditRecord:
        return AuditRecord(
            self.dialect.time_value(row[0]),
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            row[6],
            self._optional_time(row[7]),
            row[8],
            row[9],
        )
