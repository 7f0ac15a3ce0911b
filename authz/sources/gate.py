"""The activation gate: a new policy version becomes active only if it is sound.

A version passes the gate when its files parse, validate against the schema
and every policy test in it passes — whatever ``prepare`` checks before it
returns a ready-to-use engine (see :func:`authz.sources.bundles.prepare_bundle`).
Then, and only then, every activation listener is called with the new engine;
the decision point swaps it in with one reference assignment, so in-flight
checks finish on the version they started with.

A version that fails stays out: the last good version keeps serving, and the
rejection (version, time, every problem) is kept for ``GET /v1/policies``,
metrics and logs, and handed to rejection listeners (the Redis announcer tells
the other replicas, which then never activate it). A rejected version is not
checked again on every poll: a new version, or an explicit refresh
(``trigger(retry=True)``, the webhook) for a version whose *check* failed —
stage ``"prepare"``: time or memory limit, checker crash — tries again. A
source that cannot be read is recorded as the last fetch error.

Vetoes (another replica's gate rejected this version) are asked of the
``veto`` callable before every attempt and never remembered here, so the
shared record stays the one source of truth. A veto that cannot be asked
(Redis unreachable) is no veto: the version is gated on its own merits, and
a version activated that way is asked about again once the veto answers.

``GET /v1/policies`` also names the newest version the source offered at its
last read (``latest_version``, the branch tip) and what became of it, so a
force-push back to a rejected commit is visible.

:meth:`Gate.run` is the one task that owns the I/O: it reloads at start, then
every ``poll_interval`` seconds of a pollable source, and at once whenever
:meth:`Gate.trigger` is called (webhook, announcement from another replica).
Blocking work (``git``, parsing, tests) runs in a worker thread; the PDP's
``prepare`` hands the Cedar work on to a child process
(:class:`authz.sources.bundles.ProcessPreparer`) so that it never holds the
GIL of the process serving checks, and ``background`` (the preparer's
:meth:`~authz.sources.bundles.ProcessPreparer.background`) is entered in the
worker thread around the whole of it, so that thread hands the GIL over to
the checks often.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Generic, TypeVar

from authz.errors import Problem, Rejected, SourceError
from authz.sources.protocol import PolicySource, Pollable, Refreshable, Revision
from meshward.clock import Clock

__all__ = [
    "Activation",
    "FetchFailure",
    "Gate",
    "Outcome",
    "PolicyStatus",
    "Prepare",
    "Rejection",
]

log = logging.getLogger(__name__)

E = TypeVar("E")

Prepare = Callable[[Path, str], E]
Veto = Callable[[str], Awaitable[bool]]


class Outcome(StrEnum):
    """What one reload did (a metric label)."""

    ACTIVATED = "activated"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"
    VETOED = "vetoed"  # rejected by another replica's gate
    FETCH_FAILED = "fetch_failed"


@dataclass(frozen=True, slots=True)
class Activation(Generic[E]):
    version: str
    engine: E
    at: dt.datetime
    source: str


@dataclass(frozen=True, slots=True)
class Rejection:
    version: str
    at: dt.datetime
    # "checkout", "bundle", "test", "internal"; "prepare": the check itself failed
    # (time or memory limit, checker crash); "gate": another replica rejected it
    stage: str
    problems: tuple[Problem, ...]

    @property
    def vetoed(self) -> bool:
        """Refused because another replica's gate rejected this version."""
        return self.stage == "gate"

    def to_json(self) -> dict[str, Any]:
        """For ``GET /v1/policies``: where each problem is and what kind, never file text."""
        return {
            "version": self.version,
            "at": _iso(self.at),
            "stage": self.stage,
            "errors": [public_problem_json(p) for p in self.problems],
        }


# What GET /v1/policies (unauthenticated) says about a problem. Cedar's and the
# parsers' own messages quote the offending text, so they go to the log only.
_PUBLIC_MESSAGES = {
    "syntax-error": "the policy does not parse",
    "schema-error": "the schema does not parse",
    "schema-violation": "the policy does not validate against the schema",
    "validation-failed": "the policies could not be validated",
    "template": "policy templates are not supported",
    "bad-id": "the policy's @id is empty",
    "duplicate-id": "the policy id is already used by another policy",
    "empty-bundle": "no policies found",
    "missing-schema": "schema.cedarschema not found",
    "unreadable": "the file cannot be read",
    "not-utf8": "the file is not UTF-8 text",
    "bad-json": "the file is not valid JSON",
    "bad-entities": "the entities do not load",
    "bad-entity": "the entity does not conform to the schema",
    "bad-yaml": "the test file is not valid YAML",
    "bad-test": "the test case is malformed",
    "duplicate-test": "the test case name is already used in this file",
    "test-failed": "a policy test failed",
    "symlink": "a symbolic link: policy directories hold regular files only",
    "not-a-file": "not a regular file",
    "rejected_elsewhere": "rejected by another replica",
    "internal-error": "the gate failed",
    "not_found": "the configured subdirectory is not in this version",
    "bad_ref": "not a commit",
    "archive_too_large": "the version's files exceed policy_source.max_archive_bytes",
    "archive_too_many_files": "the version has more files than policy_source.max_archive_files",
    "archive_file_too_large": "a file exceeds policy_source.max_file_bytes",
    "archive_bad_member": "the version holds a link or special file",
}


def public_problem_json(problem: Problem) -> dict[str, Any]:
    """A problem as ``GET /v1/policies`` shows it: file, line, column, code, a fixed message."""
    message = _PUBLIC_MESSAGES.get(
        problem.code, "see the PDP log or `meshward policy validate` for the detail"
    )
    return {**_problem_json(problem), "message": message}


def _problem_json(problem: Problem) -> dict[str, Any]:
    return {
        "file": problem.file or None,
        "line": problem.line or None,
        "column": problem.column or None,
        "code": problem.code,
        "message": problem.message,
    }


@dataclass(frozen=True, slots=True)
class FetchFailure:
    code: str
    message: str
    at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "at": _iso(self.at)}


@dataclass(frozen=True, slots=True)
class PolicyStatus:
    """What ``GET /v1/policies`` shows."""

    source: str
    active_version: str | None
    activated_at: dt.datetime | None
    last_rejected: Rejection | None
    last_fetch_error: FetchFailure | None
    last_fetch_ok_at: dt.datetime | None
    reloads: dict[str, int] = field(default_factory=dict)
    latest_version: str | None = None  # the source's newest version at its last read
    latest_state: str | None = None  # "active", "rejected", "vetoed" or "pending"

    def last_error(self) -> dict[str, Any] | None:
        """The most recent load error, rejection or fetch failure (the contract's summary)."""
        rejected, fetch = self.last_rejected, self.last_fetch_error
        if fetch is not None and (rejected is None or fetch.at >= rejected.at):
            return {"kind": "fetch", **fetch.to_json()}
        if rejected is not None:
            return {"kind": "rejected", **rejected.to_json()}
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "active_version": self.active_version,
            "activated_at": _iso(self.activated_at) if self.activated_at else None,
            "last_rejected": self.last_rejected.to_json() if self.last_rejected else None,
            "last_fetch_error": self.last_fetch_error.to_json() if self.last_fetch_error else None,
            "last_fetch_ok_at": _iso(self.last_fetch_ok_at) if self.last_fetch_ok_at else None,
            "latest_version": self.latest_version,
            "latest_state": self.latest_state,
            "last_error": self.last_error(),
            "reloads": dict(self.reloads),
        }


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


_MAX_REMEMBERED_REJECTIONS = 256
# A version whose files cannot be written out for one of these reasons never will
# be (the subdirectory is not in that commit); any other failure is retried.
_PERMANENT_CHECKOUT_ERRORS = frozenset({"not_found", "bad_ref"})


class Gate(Generic[E]):
    """Keeps the active engine of one policy source; see the module docstring."""

    def __init__(
        self,
        source: PolicySource,
        prepare: Prepare[E],
        *,
        clock: Clock,
        work_dir: Path,
        veto: Veto | None = None,
        background: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
    ) -> None:
        self._source = source
        self._background = background
        self._prepare = prepare
        self._clock = clock
        self._work_dir = work_dir
        self._veto = veto
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._on_activate: list[Callable[[Activation[E]], None]] = []
        self._on_reject: list[Callable[[Rejection], Awaitable[None] | None]] = []
        self._active: Activation[E] | None = None
        self._rejected: dict[str, Rejection] = {}  # by this gate; vetoes are never kept here
        self._last_rejected: Rejection | None = None
        self._latest: str | None = None
        self._latest_state: str | None = None
        self._vetoes_seen: set[str] = set()
        self._unconfirmed: str | None = None  # active, activated while the veto was unknown
        self._retry = False
        self._fetch_error: FetchFailure | None = None
        self._fetch_ok_at: dt.datetime | None = None
        self._fetch_ok_mono: float | None = None
        self._reloads: dict[str, int] = {o.value: 0 for o in Outcome}

    # -- listeners ---------------------------------------------------------------------------

    def on_activate(self, listener: Callable[[Activation[E]], None]) -> None:
        """Call ``listener`` (synchronously, on the event loop) after every activation.

        A listener added when a version is already active is called at once.
        """
        self._on_activate.append(listener)
        if self._active is not None:
            listener(self._active)

    def on_reject(self, listener: Callable[[Rejection], Awaitable[None] | None]) -> None:
        """Call ``listener`` after every rejection by this gate (not for vetoes)."""
        self._on_reject.append(listener)

    # -- state ---------------------------------------------------------------------------------

    @property
    def source(self) -> PolicySource:
        return self._source

    @property
    def active(self) -> Activation[E] | None:
        return self._active

    def seconds_since_fetch(self) -> float | None:
        """Seconds since the source was last read successfully (``None``: never)."""
        if self._fetch_ok_mono is None:
            return None
        return self._clock.monotonic() - self._fetch_ok_mono

    def status(self) -> PolicyStatus:
        active = self._active
        return PolicyStatus(
            source=self._source.description,
            active_version=active.version if active else None,
            activated_at=active.at if active else None,
            last_rejected=self._last_rejected,
            last_fetch_error=self._fetch_error,
            last_fetch_ok_at=self._fetch_ok_at,
            reloads=dict(self._reloads),
            latest_version=self._latest,
            latest_state=self._latest_state,
        )

    # -- reloading -----------------------------------------------------------------------------

    def trigger(self, *, retry: bool = False) -> None:
        """Ask :meth:`run` to reload now (webhook, announcement).

        ``retry``: also check again a latest version whose check failed
        (stage ``"prepare"``), as an explicit refresh does.
        """
        self._retry = self._retry or retry
        self._wake.set()

    async def reload(self, *, fetch: bool = True, retry: bool = False) -> Outcome:
        """Fetch (if the source is remote), then gate and activate its latest version.

        ``retry``: a latest version rejected because its check failed (time,
        memory, crash) is checked again instead of being skipped.
        """
        async with self._lock:
            outcome = await self._reload(fetch, retry)
        self._reloads[outcome.value] += 1
        return outcome

    def _fetch_failed(self, exc: SourceError) -> Outcome:
        self._fetch_error = FetchFailure(exc.code, str(exc), self._clock.now())
        log.warning(
            "policy source unreadable; keeping the last good version",
            extra={"fields": {"code": exc.code, "error": str(exc), "active": self._version}},
        )
        return Outcome.FETCH_FAILED

    async def _reload(self, fetch: bool, retry: bool) -> Outcome:
        try:
            revision = await asyncio.to_thread(self._latest_revision, fetch)
        except SourceError as exc:
            return self._fetch_failed(exc)
        self._fetch_error = None
        self._fetch_ok_at = self._clock.now()
        self._fetch_ok_mono = self._clock.monotonic()
        version = revision.version
        self._latest = version
        if version == self._version:
            self._latest_state = "active"
            if self._unconfirmed == version and self._veto is not None:
                await self._confirm(self._veto, version)
            return Outcome.UNCHANGED
        known = self._rejected.get(version)
        if known is not None:
            if not (retry and known.stage == "prepare"):
                self._latest_state = "rejected"
                return Outcome.UNCHANGED
            del self._rejected[version]
        self._latest_state = "pending"
        confirmed = True
        if self._veto is not None:
            vetoed = await self._ask_veto(self._veto, version)
            if vetoed:
                return self._vetoed(version)
            confirmed = vetoed is not None
        try:
            engine = await asyncio.to_thread(self._prepare_revision_safely, revision)
        except Rejected as exc:
            rejection = Rejection(version, self._clock.now(), exc.stage, exc.problems)
            self._remember(rejection)
            self._latest_state = "rejected"
            log.warning(
                "policy version rejected; keeping the last good version",
                extra={
                    "fields": {
                        "version": version,
                        "active": self._version,
                        "stage": exc.stage,
                        "errors": [_problem_json(p) for p in exc.problems],
                    }
                },
            )
            for listener in self._on_reject:
                try:
                    result = listener(rejection)
                    if result is not None:
                        await result
                except Exception:
                    log.exception("policy rejection listener failed")
            return Outcome.REJECTED
        except SourceError as exc:  # transient: the version is tried again next time
            return self._fetch_failed(exc)
        self._activate(Activation(version, engine, self._clock.now(), revision.source))
        self._unconfirmed = None if confirmed else version
        if self._latest == version:
            self._latest_state = "active"
        return Outcome.ACTIVATED

    @property
    def _version(self) -> str | None:
        return self._active.version if self._active else None

    async def _ask_veto(self, veto: Veto, version: str) -> bool | None:
        """Whether another replica rejected ``version``; ``None``: nobody could be asked."""
        try:
            return await veto(version)
        except Exception as exc:
            # Cannot ask the other replicas: no veto. This gate judges the version
            # on its own merits; an outage of the shared record blocks nothing.
            log.warning(
                "cannot check rejections of other replicas; gating on this replica's checks",
                extra={"fields": {"version": version, "error": str(exc)}},
            )
            return None

    def _vetoed(self, version: str) -> Outcome:
        # Not remembered in ``_rejected``: the veto is asked again next time, so
        # the shared record stays the one source of truth.
        rejection = Rejection(
            version,
            self._clock.now(),
            "gate",
            (Problem("", 0, 0, "rejected_elsewhere", "rejected by another replica"),),
        )
        self._last_rejected = rejection
        self._latest_state = "vetoed"
        if version not in self._vetoes_seen:
            self._vetoes_seen.add(version)
            while len(self._vetoes_seen) > _MAX_REMEMBERED_REJECTIONS:
                self._vetoes_seen.pop()
            log.warning(
                "policy version rejected by another replica", extra={"fields": {"version": version}}
            )
        return Outcome.VETOED

    async def _confirm(self, veto: Veto, version: str) -> None:
        """Ask again about the active version, activated while the veto could not be asked."""
        vetoed = await self._ask_veto(veto, version)
        if vetoed is None:
            return
        self._unconfirmed = None
        if vetoed:
            # This replica's own checks passed it, so it keeps serving; say so loudly.
            log.warning(
                "the active policy version was rejected by another replica",
                extra={"fields": {"version": version}},
            )

    def _latest_revision(self, fetch: bool) -> Revision:
        with self._background():
            if fetch and isinstance(self._source, Refreshable):
                self._source.refresh()
            return self._source.latest()

    def _prepare_revision_safely(self, revision: Revision) -> E:
        """:meth:`_prepare_revision`; an unexpected error rejects the version (fail closed)."""
        try:
            with self._background():
                return self._prepare_revision(revision)
        except SourceError:
            raise
        except Exception as exc:
            log.exception(
                "policy version crashed the gate", extra={"fields": {"version": revision.version}}
            )
            problem = Problem("", 0, 0, "internal-error", f"the gate failed: {type(exc).__name__}")
            raise Rejected([problem], stage="internal") from exc

    def _prepare_revision(self, revision: Revision) -> E:
        self._work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="checkout-", dir=self._work_dir) as tmp:
            try:
                root = self._source.materialize(revision, Path(tmp))
            except SourceError as exc:
                if exc.code not in _PERMANENT_CHECKOUT_ERRORS:
                    raise  # e.g. a timeout, or files edited while being read
                raise Rejected([Problem("", 0, 0, exc.code, str(exc))], stage="checkout") from exc
            return self._prepare(root, revision.version)

    def _remember(self, rejection: Rejection) -> None:
        self._last_rejected = rejection
        self._rejected[rejection.version] = rejection
        while len(self._rejected) > _MAX_REMEMBERED_REJECTIONS:
            self._rejected.pop(next(iter(self._rejected)))

    def _activate(self, activation: Activation[E]) -> None:
        previous = self._version
        self._active = activation
        log.info(
            "policy version activated",
            extra={"fields": {"version": activation.version, "previous": previous}},
        )
        for listener in self._on_activate:
            try:
                listener(activation)
            except Exception:
                log.exception("policy activation listener failed")

    async def run(self) -> None:
        """Reload now, then on every poll interval or :meth:`trigger`, until cancelled."""
        interval = self._source.poll_interval if isinstance(self._source, Pollable) else None
        while True:
            self._wake.clear()
            retry, self._retry = self._retry, False
            try:
                await self.reload(retry=retry)
            except Exception:  # never let the loop die; the last good version keeps serving
                log.exception("policy reload failed unexpectedly")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval)
