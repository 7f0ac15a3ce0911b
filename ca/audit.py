"""The CA's audit trail, written around every issuance and admin action.

:meth:`Auditor.audited` is a context around an action: whatever happens inside
— success, a refused request, an internal failure — leaves one row in the
store and one JSON log line (serial, SPIFFE ID, notAfter, method, caller),
never a key or a token. The auditor remembers which errors it has recorded,
so a refusal raised before the CA was reached (a bad body, a non-admin) is
recorded once by :meth:`Auditor.refusal` and an audited one is not recorded
twice; the error object itself carries no flag.

Rows written at the same moment by several threads share one transaction
(:mod:`ca.groupcommit`); each action still returns only once its own row is
stored, and fails if it could not be.

An action run on the event loop (:mod:`ca.api` issuing inline) runs inside
:meth:`Auditor.deferred`: its rows — and the agent records it updates
(:func:`keep_deferred`) — are kept instead of written, and the caller awaits
:meth:`Auditor.store_deferred` before it answers, so the rows and records
of every action of one loop step share one transaction (all stored, or
none and every one of those actions fails). Nothing is answered before its
row is stored there either; the API does the waiting.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from ca.attestation.caller import Caller
from ca.errors import CaError
from ca.groupcommit import GroupCommit, LoopCommit
from ca.store.protocol import AgentRecord, AuditRecord, BatchWrites, CaStore
from meshward.clock import Clock

__all__ = ["Auditor", "Deferred", "Outcome", "keep_deferred"]

audit_log = logging.getLogger("meshward.ca.audit")

Deferred = AuditRecord | AgentRecord

# What the action running in this context writes, when its caller writes it (deferred()).
_deferred: contextvars.ContextVar[list[Deferred] | None] = contextvars.ContextVar(
    "meshward_ca_deferred_writes", default=None
)


def keep_deferred(item: Deferred) -> bool:
    """Keep ``item`` for the caller of :meth:`Auditor.deferred` to write; False outside one."""
    kept = _deferred.get()
    if kept is None:
        return False
    kept.append(item)
    return True


@dataclass
class Outcome:
    """What an action did, filled in as it runs; the audit row is written from it."""

    spiffe_id: str | None = None
    serial: str | None = None
    not_after: dt.datetime | None = None
    method: str = "none"
    detail: str | None = None


@dataclass
class Auditor:
    """Writes audit rows; thread-safe."""

    store: CaStore
    clock: Clock
    _recorded: weakref.WeakSet[BaseException] = field(default_factory=weakref.WeakSet)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _rows: GroupCommit[AuditRecord] = field(init=False, repr=False)
    _loop_rows: LoopCommit[Deferred] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rows = GroupCommit(self.store.append_audits)
        self._loop_rows = LoopCommit(self._write_deferred)

    def _write_deferred(self, items: Sequence[Deferred]) -> None:
        agents = [i for i in items if isinstance(i, AgentRecord)]
        audits = [i for i in items if isinstance(i, AuditRecord)]
        if isinstance(self.store, BatchWrites):
            self.store.write_batch(agents, audits)
            return
        for agent in agents:  # a store without the ability: the records first, as inline
            self.store.record_agent(agent)
        self.store.append_audits(audits)

    @contextmanager
    def deferred(self) -> Iterator[list[Deferred]]:
        """Keep the rows (and agent records) of the actions run inside, in this context,
        for the caller to store.

        The caller must :meth:`store_deferred` them — also when the action
        raised — and answer only once that returned.
        """
        rows: list[Deferred] = []
        token = _deferred.set(rows)
        try:
            yield rows
        finally:
            _deferred.reset(token)

    async def store_deferred(self, rows: list[Deferred]) -> None:
        """Store rows kept by :meth:`deferred`, with those of the same loop step (one commit)."""
        await self._loop_rows.store(rows)

    def record(self, action: str, caller: Caller, result: str, outcome: Outcome) -> None:
        record = AuditRecord(
            time=self.clock.now(),
            action=action,
            method=outcome.method,
            caller=str(caller),
            result=result,
            spiffe_id=outcome.spiffe_id,
            serial=outcome.serial,
            not_after=outcome.not_after,
            detail=outcome.detail,
        )
        try:
            if not keep_deferred(record):
                self._rows.append(record)
        finally:
            if audit_log.isEnabledFor(logging.INFO):
                audit_log.info("audit %s %s", action, result, extra={"fields": record.to_json()})

    def _mark(self, exc: BaseException) -> None:
        with self._lock:
            self._recorded.add(exc)

    def is_recorded(self, exc: BaseException) -> bool:
        """True once ``exc`` has been written to the trail."""
        with self._lock:
            return exc in self._recorded

    @contextmanager
    def audited(
        self,
        action: str,
        caller: Caller,
        outcome: Outcome,
        on_result: Callable[[str], None] | None = None,
    ) -> Iterator[None]:
        """Audit the enclosed action; ``on_result`` sees ``ok`` or the error code."""
        try:
            yield
        except CaError as exc:
            outcome.detail = outcome.detail or exc.reason
            self._mark(exc)
            self.record(action, caller, exc.code, outcome)
            if on_result is not None:
                on_result(exc.code)
            raise
        except Exception:
            self.record(action, caller, "internal_error", outcome)
            raise
        self.record(action, caller, "ok", outcome)
        if on_result is not None:
            on_result("ok")

    def refusal(self, action: str, caller: Caller, exc: CaError) -> None:
        """Audit a request refused before it reached the CA (bad body, not admin)."""
        self._mark(exc)
        self.record(action, caller, exc.code, Outcome(detail=exc.reason))
