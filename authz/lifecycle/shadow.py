"""Shadow mode: a candidate policy set judged on live traffic, never enforced.

The candidate comes from its own source and gate (another branch, another
directory), so only a candidate that passes the gate is ever evaluated. Each
live decision is handed to :meth:`Shadow.observe` after it was made; a worker
thread evaluates the same request against the candidate and compares the
effects. The enforced decision is never touched or delayed: a full queue
drops the comparison (counted), and a failing candidate counts as an error.

Disagreements are counted by transition (``allow->deny``) for metrics and
logged with the request's principal, action, resource and both versions.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from authz.engine.model import AccessRequest, Decision

__all__ = ["Evaluator", "Shadow"]

log = logging.getLogger(__name__)


class Evaluator(Protocol):
    def evaluate(self, request: AccessRequest) -> Decision: ...


class Shadow:
    """Compares live decisions with a candidate engine's, off the decision path."""

    def __init__(
        self,
        candidate: Callable[[], Evaluator | None],
        *,
        max_queue: int = 10_000,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        """``candidate`` returns the candidate's current engine (``None`` before one passed
        its gate); ``on_result`` is called with ``agree``, ``disagree``, ``error`` or
        ``dropped`` for every observed decision (metrics)."""
        self._candidate = candidate
        self._queue: queue.Queue[tuple[AccessRequest, Decision] | None] = queue.Queue(max_queue)
        self._thread: threading.Thread | None = None
        self._on_result = on_result
        self.results: Counter[str] = Counter()
        self.disagreements: Counter[str] = Counter()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, name="meshward-shadow", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> Shadow:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def observe(self, request: AccessRequest, decision: Decision) -> None:
        """Queue one live decision for comparison; never raises, never blocks."""
        try:
            self._queue.put_nowait((request, decision))
        except queue.Full:
            self._count("dropped")

    def _count(self, result: str) -> None:
        self.results[result] += 1
        if self._on_result is not None:
            with contextlib.suppress(Exception):
                self._on_result(result)

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self.compare(*item)

    def compare(self, request: AccessRequest, active: Decision) -> Decision | None:
        """Evaluate ``request`` with the candidate; return its decision when they disagree."""
        engine = self._candidate()
        if engine is None:
            return None
        try:
            candidate = engine.evaluate(request)
        except Exception:
            self._count("error")
            log.exception("shadow policies failed to evaluate a request")
            return None
        if candidate.effect is active.effect:
            self._count("agree")
            return None
        transition = f"{active.effect.value}->{candidate.effect.value}"
        self.disagreements[transition] += 1
        self._count("disagree")
        log.warning(
            "shadow policies disagree",
            extra={
                "fields": {
                    "principal": str(request.principal),
                    "action": str(request.action),
                    "resource": str(request.resource),
                    "active": active.effect.value,
                    "active_version": active.policy_version,
                    "shadow": candidate.effect.value,
                    "shadow_version": candidate.policy_version,
                    "shadow_reasons": list(candidate.reasons),
                }
            },
        )
        return candidate
