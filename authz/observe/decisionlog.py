"""Decision logs: one JSON line per decision, to stdout or a size-rotated file.

Each line holds what an auditor asks (time, decision id, policy version,
principal, action, resource, decision and outcome, determining policy ids,
errors, latency, cache tier, adapter, and the request summary: method, host,
path) and what ``meshward policy replay`` needs to evaluate the request
again: the principal's parents and attributes and the Cedar context. The
:class:`DecisionLog` is a decider observer (:meth:`DecisionLog.observe`).

What a request carried is logged only as far as it is known to be harmless
(every value a client sends is presumed to hold a credential):

- ``context.http.headers``: only the values of allow-listed headers
  (``decision_log.headers``) are kept; every other header keeps its name and
  logs ``[redacted]``;
- ``context.http.query``: parameter names are kept, values are logged as
  ``[redacted]`` (``?access_token=[redacted]&page=[redacted]``), unless
  ``decision_log.query_values`` keeps them — and then still not for the
  parameters named on the redaction list;
- anywhere else (context, principal attributes), values under a key on the
  redaction list (``decision_log.redact``; matched case-insensitively at any
  depth, and also naming headers and query parameters) are ``[redacted]``.

The dotted path of each redacted value is listed under ``redacted``, so a
replay knows which entries it cannot reproduce faithfully.

Writing never fails or slows a decision: :meth:`DecisionLog.record` hands
the (immutable) record to a queue synchronously — there is no ``await`` for a
cancelled caller to interrupt, so a decision is logged even when the caller
gave up — and a writer thread formats and appends the line. A full queue drops the line and a
failed write is counted; neither is raised.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import queue
import random
import sys
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any, Protocol

from authz.engine.decider import DecisionRecord
from meshward.logs import REDACTED
from meshward.settings import DECISION_LOG_HEADERS, DECISION_LOG_REDACT

__all__ = [
    "DEFAULT_LOGGED_HEADERS",
    "DEFAULT_REDACT",
    "DecisionLog",
    "LineSink",
    "RotatingFileSink",
    "StreamSink",
    "decision_entry",
    "open_sink",
]

log = logging.getLogger(__name__)

DEFAULT_REDACT = DECISION_LOG_REDACT
DEFAULT_LOGGED_HEADERS = DECISION_LOG_HEADERS


def _redact_query(query: str, keep_values: bool, keys: frozenset[str]) -> tuple[str, bool]:
    """``query`` with parameter values replaced by ``[redacted]``; names are kept."""
    parts: list[str] = []
    changed = False
    for item in query.split("&"):
        name, sep, value = item.partition("=")
        secret = urllib.parse.unquote_plus(name).lower() in keys
        if sep and value and (secret or not keep_values):
            parts.append(f"{name}={REDACTED}")
            changed = True
        else:
            parts.append(item)
    return "&".join(parts), changed


def _redact_http(
    http: Mapping[str, Any],
    keys: frozenset[str],
    logged_headers: frozenset[str],
    query_values: bool,
    found: list[str],
) -> dict[str, Any]:
    rest = {k: v for k, v in http.items() if k not in ("headers", "query")}
    out: dict[str, Any] = dict(_redact(rest, keys, "context.http", found))
    headers = http.get("headers")
    if isinstance(headers, Mapping):
        kept: dict[str, Any] = {}
        for name, value in headers.items():
            lowered = str(name).lower()
            if lowered in logged_headers and lowered not in keys:
                kept[str(name)] = value
            else:
                kept[str(name)] = REDACTED
                found.append(f"context.http.headers.{name}")
        out["headers"] = kept
    elif "headers" in http:
        out["headers"] = _redact(headers, keys, "context.http.headers", found)
    query = http.get("query")
    if isinstance(query, str):
        out["query"], changed = _redact_query(query, query_values, keys)
        if changed:
            found.append("context.http.query")
    elif "query" in http:
        out["query"] = _redact(query, keys, "context.http.query", found)
    return out


def _redact_context(
    context: Mapping[str, Any],
    keys: frozenset[str],
    logged_headers: frozenset[str],
    query_values: bool,
    found: list[str],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in context.items():
        if key == "http" and isinstance(value, Mapping):
            out[key] = _redact_http(value, keys, logged_headers, query_values, found)
        elif str(key).lower() in keys:
            out[str(key)] = REDACTED
            found.append(f"context.{key}")
        else:
            out[str(key)] = _redact(value, keys, f"context.{key}", found)
    return out


def _redact(value: Any, keys: frozenset[str], path: str, found: list[str]) -> Any:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if str(key).lower() in keys:
                out[str(key)] = REDACTED
                found.append(where)
            else:
                out[str(key)] = _redact(item, keys, where, found)
        return out
    if isinstance(value, list | tuple):
        return [_redact(item, keys, f"{path}[{i}]", found) for i, item in enumerate(value)]
    return value


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decision_entry(
    record: DecisionRecord,
    redact: Iterable[str] = DEFAULT_REDACT,
    *,
    headers: Iterable[str] = DEFAULT_LOGGED_HEADERS,
    query_values: bool = False,
) -> dict[str, Any]:
    """The log entry for ``record`` (pure): a JSON-ready dict.

    A decision made before a request could be built (authentication failed, a
    malformed request) has no context and is marked ``"replayable": false``.
    """
    keys = frozenset(k.lower() for k in redact)
    logged_headers = frozenset(h.lower() for h in headers)
    found: list[str] = []
    req = record.request
    entry: dict[str, Any] = {
        "time": _iso(record.time),
        "decision_id": record.decision_id,
        "policy_version": record.version,
        "principal": record.principal,
        "principal_parents": [],
        "principal_attributes": {},
        "action": record.action,
        "resource": record.resource,
        "decision": record.decision,
        "outcome": record.outcome,
        "reasons": list(record.reasons),
        "errors": list(record.errors),
        "latency_ms": round(record.latency_seconds * 1000.0, 3),
        "cache": record.cache_tier,
        "adapter": record.adapter,
        "request": {"method": record.method, "host": record.host, "path": record.path},
        "context": None,
        "replayable": req is not None,
        "redacted": found,
    }
    if req is not None:
        entry["principal_parents"] = [str(p) for p in req.identity.parents]
        entry["principal_attributes"] = _redact(
            req.identity.attributes, keys, "principal_attributes", found
        )
        entry["context"] = _redact_context(req.context, keys, logged_headers, query_values, found)
    return entry


class LineSink(Protocol):
    """Where log lines go; called from the writer thread only."""

    def write_line(self, line: str) -> None: ...

    def close(self) -> None: ...


class StreamSink:
    """Lines to a text stream (stdout by default)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream or sys.stdout

    def write_line(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()


class RotatingFileSink:
    """Lines appended to ``path``; past ``max_bytes`` it becomes ``path.1`` (``.2`` …).

    At most ``backups`` rotated files are kept; the oldest is removed.
    """

    def __init__(self, path: Path, *, max_bytes: int = 50 * 1024 * 1024, backups: int = 5) -> None:
        if max_bytes <= 0 or backups < 0:
            raise ValueError("max_bytes must be > 0 and backups >= 0")
        self._path = path
        self._max_bytes = max_bytes
        self._backups = backups
        self._file: IO[bytes] | None = None
        self._size = 0

    def _open(self) -> IO[bytes]:
        if self._file is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self._path.open("ab")
            self._size = self._file.tell()
        return self._file

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._backups == 0:
            self._path.unlink(missing_ok=True)
            return
        for i in range(self._backups - 1, 0, -1):
            older = self._path.with_name(f"{self._path.name}.{i}")
            if older.exists():
                older.replace(self._path.with_name(f"{self._path.name}.{i + 1}"))
        if self._path.exists():
            self._path.replace(self._path.with_name(f"{self._path.name}.1"))

    def write_line(self, line: str) -> None:
        data = (line + "\n").encode("utf-8")
        handle = self._open()
        if self._size and self._size + len(data) > self._max_bytes:
            self._rotate()
            handle = self._open()
        handle.write(data)
        handle.flush()
        self._size += len(data)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def open_sink(path: str, *, max_bytes: int, backups: int) -> LineSink:
    """``-`` for stdout, else a rotating file."""
    if path == "-":
        return StreamSink()
    return RotatingFileSink(Path(path), max_bytes=max_bytes, backups=backups)


_STOP = object()


class DecisionLog:
    """Samples, redacts and queues decision log lines; a thread writes them.

    Use as ``with DecisionLog(sink) as dlog: ... dlog.record(event)`` or call
    :meth:`start` and :meth:`close`. ``written``, ``dropped`` and ``failed``
    count lines for metrics.
    """

    def __init__(
        self,
        sink: LineSink,
        *,
        sample_rate: float = 1.0,
        redact: Iterable[str] = DEFAULT_REDACT,
        headers: Iterable[str] = DEFAULT_LOGGED_HEADERS,
        query_values: bool = False,
        rng: random.Random | None = None,
        max_queue: int = 10_000,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError("sample_rate must be within [0, 1]")
        self._sink = sink
        self._sample_rate = sample_rate
        self._redact = tuple(redact)
        self._headers = tuple(headers)
        self._query_values = query_values
        self._rng = rng or random.Random()  # noqa: S311 - sampling, not security
        self._queue: queue.Queue[object] = queue.Queue(max_queue)
        self._thread: threading.Thread | None = None
        self.written = 0
        self.dropped = 0
        self.failed = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._drain, name="meshward-decision-log", daemon=True
            )
            self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the writer and close the sink."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None
        with contextlib.suppress(Exception):
            self._sink.close()

    def __enter__(self) -> DecisionLog:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def observe(self, record: DecisionRecord) -> None:
        """The decider's observer hook: :meth:`record`."""
        self.record(record)

    def record(self, record: DecisionRecord) -> bool:
        """Queue ``record``'s line if sampled; never raises. Returns whether it was queued."""
        try:
            if self._sample_rate < 1.0 and self._rng.random() >= self._sample_rate:
                return False
            self._queue.put_nowait(record)  # immutable: formatted by the writer thread
        except queue.Full:
            self.dropped += 1
            return False
        except Exception:  # a log line must never fail a decision
            self.failed += 1
            log.exception("decision log: cannot queue an entry")
            return False
        return True

    def _line(self, record: DecisionRecord) -> str:
        return json.dumps(
            decision_entry(
                record, self._redact, headers=self._headers, query_values=self._query_values
            ),
            separators=(",", ":"),
            ensure_ascii=False,
            default=str,
        )

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if not isinstance(item, DecisionRecord):
                return
            try:
                self._sink.write_line(self._line(item))
                self.written += 1
            except Exception as exc:
                self.failed += 1
                log.warning("decision log: cannot write an entry: %s", exc)
