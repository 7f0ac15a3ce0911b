"""The decision pipeline every adapter shares.

    raw request facts -> authn -> AccessRequest -> [cache] -> engine -> Verdict

Adapters (gRPC, HTTP) only map their wire format to :class:`RequestFacts` and a
:class:`Verdict` back; :mod:`authz.engine.request` (the one request mapping) turns the
facts into the AccessRequest; everything between is here, with three seams:

- :class:`EngineHolder` — the active engine, swapped atomically by a policy
  source; a check keeps the engine it started with.
- :class:`DecisionCache` — optional, one call: ``cache.get_or_evaluate(request, engine)``.
- :class:`DecisionObserver` — told a :class:`DecisionRecord` after every
  decision (decision log, metrics, traces).

Fail closed: an exception anywhere on the path is a deny (:attr:`Outcome.ERROR`)
with the detail in the log only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, runtime_checkable

from authz.authn.authenticator import Authenticator
from authz.cache.tiered import CacheableEngine
from authz.engine.model import AccessRequest, Decision, Effect, EntityUid
from authz.engine.request import (
    DEFAULT_PATHS,
    MAX_METHOD_LENGTH,
    MalformedRequest,
    PathOptions,
    RequestFacts,
    build_request,
)
from authz.errors import AuthnError
from meshward.clock import Clock

__all__ = [
    "DecisionCache",
    "DecisionObserver",
    "DecisionRecord",
    "Decider",
    "EngineHolder",
    "Evaluator",
    "Explainer",
    "Outcome",
    "RandomIds",
    "TRACE_HEADERS",
    "RequestFacts",
    "Verdict",
]

log = logging.getLogger(__name__)

# The W3C Trace Context headers handed to observers (authz.observe.tracing).
TRACE_HEADERS = ("traceparent", "tracestate")


@runtime_checkable
class Evaluator(CacheableEngine, Protocol):
    """The engine as the decider holds it: it decides an :class:`AccessRequest` and
    never raises; it offers the decision cache its typed seam."""


class _Explanation(Protocol):
    def to_json(self) -> dict[str, Any]: ...


@runtime_checkable
class Explainer(Protocol):
    """An engine that can say why it decides as it does (:mod:`authz.engine.explain`)."""

    def explain(self, request: AccessRequest) -> _Explanation: ...


@runtime_checkable
class DecisionCache(Protocol):
    """A cache in front of the engine; returns the decision and the tier that answered."""

    async def get_or_evaluate(
        self, request: AccessRequest, engine: Evaluator
    ) -> tuple[Decision, str]: ...


@runtime_checkable
class DecisionObserver(Protocol):
    """Told about every decision; must be quick and must not raise (errors are logged)."""

    def observe(self, record: DecisionRecord) -> None: ...


class EngineHolder:
    """The active engine. :meth:`swap` replaces it in one assignment."""

    def __init__(self, engine: Evaluator | None = None, version: str = "") -> None:
        self._active: tuple[Evaluator, str] | None = (engine, version) if engine else None

    @property
    def active(self) -> tuple[Evaluator, str] | None:
        """``(engine, version)``, or ``None`` before policies are loaded."""
        return self._active

    @property
    def version(self) -> str:
        return self._active[1] if self._active else ""

    @property
    def ready(self) -> bool:
        return self._active is not None

    def swap(self, engine: Evaluator, version: str) -> Evaluator | None:
        """Make ``engine`` the active one; returns the one it replaces."""
        previous = self._active
        self._active = (engine, version)
        return previous[0] if previous is not None else None


class Outcome(StrEnum):
    """How a decision maps to the wire; also the ``result`` metric label."""

    ALLOW = "allow"
    DENY = "deny"  # 403 / PERMISSION_DENIED
    UNAUTHENTICATED = "unauthenticated"  # 401 / UNAUTHENTICATED
    ERROR = "error"  # generic deny (403), detail only in the log
    UNAVAILABLE = "unavailable"  # no policy version active yet: 503 / UNAVAILABLE, never a 403


class Verdict(NamedTuple):
    """The decision and what an adapter needs to answer the proxy (immutable)."""

    outcome: Outcome
    decision: Decision
    decision_id: str
    principal: EntityUid | None = None
    remove_headers: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOW

    def upstream_headers(self) -> list[tuple[str, str]]:
        """Headers to set on the allowed request as it goes upstream."""
        headers = [("x-meshward-decision-id", self.decision_id)]
        if self.principal is not None:
            headers.insert(0, ("x-meshward-principal", str(self.principal)))
        return headers

    def error_body(self) -> dict[str, str]:
        """The JSON body of a denial: generic text and the decision id."""
        text = {
            Outcome.UNAUTHENTICATED: "unauthenticated",
            Outcome.DENY: "forbidden",
            Outcome.UNAVAILABLE: "unavailable",
        }.get(self.outcome, "denied")
        return {"error": text, "decision_id": self.decision_id}


class DecisionRecord:
    """What observers are told about one decision (secrets never included).

    One is made for every decision, so it holds only what the decider already
    has (the verdict, the built request, the request summary as received) and
    derives the rest (the principal's text, the wall-clock time, the
    truncated summary) when an observer reads it. Read-only.
    """

    __slots__ = (
        "_adapter",
        "_cache_tier",
        "_host",
        "_latency",
        "_method",
        "_path",
        "_request",
        "_timestamp",
        "_trace",
        "_verdict",
        "_version",
    )

    def __init__(
        self,
        verdict: Verdict,
        request: AccessRequest | None,
        *,
        version: str,
        cache_tier: str,
        latency_seconds: float,
        timestamp: float,
        adapter: str,
        method: str = "",
        host: str = "",
        path: str = "",
        trace_context: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self._verdict = verdict
        self._request = request
        self._version = version
        self._cache_tier = cache_tier
        self._latency = latency_seconds
        self._timestamp = timestamp
        self._adapter = adapter
        # Cut now, not when read: a record kept in memory never holds a huge
        # request line (a slice of a short string is the string itself).
        self._method = method[:MAX_METHOD_LENGTH]
        self._host = host[:256]
        self._path = path[:1024]
        self._trace = trace_context

    @property
    def verdict(self) -> Verdict:
        return self._verdict

    @property
    def request(self) -> AccessRequest | None:
        """The full request (principal parents, context) for the decision log and
        replay; ``None`` when the request could not be built. Not in to_json()."""
        return self._request

    @property
    def time(self) -> dt.datetime:
        """When the decision was made (UTC)."""
        return dt.datetime.fromtimestamp(self._timestamp, dt.UTC)

    @property
    def decision_id(self) -> str:
        return self._verdict.decision_id

    @property
    def version(self) -> str:
        return self._version

    @property
    def principal(self) -> str:
        return str(self._request.principal) if self._request is not None else ""

    @property
    def action(self) -> str:
        return str(self._request.action) if self._request is not None else ""

    @property
    def resource(self) -> str:
        return str(self._request.resource) if self._request is not None else ""

    @property
    def decision(self) -> str:
        """``"allow"`` or ``"deny"``."""
        return self._verdict.decision.effect._value_  # no enum property on the hot path

    @property
    def outcome(self) -> str:
        return self._verdict.outcome._value_

    @property
    def reasons(self) -> tuple[str, ...]:
        return self._verdict.decision.reasons

    @property
    def errors(self) -> tuple[str, ...]:
        return self._verdict.decision.errors

    @property
    def latency_seconds(self) -> float:
        return self._latency

    @property
    def cache_tier(self) -> str:
        """``"none"`` when no cache answered."""
        return self._cache_tier

    @property
    def adapter(self) -> str:
        return self._adapter

    @property
    def method(self) -> str:
        return self._method

    @property
    def host(self) -> str:
        return self._host

    @property
    def path(self) -> str:
        return self._path

    @property
    def trace_context(self) -> tuple[tuple[str, str], ...]:
        """W3C trace context headers (traceparent, tracestate) the proxy forwarded,
        so a tracing observer continues the proxy's trace. Not in to_json()."""
        return self._trace

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "decision_id": self.decision_id,
            "policy_version": self.version,
            "principal": self.principal,
            "action": self.action,
            "resource": self.resource,
            "decision": self.decision,
            "outcome": self.outcome,
            "reasons": list(self.reasons),
            "errors": list(self.errors),
            "latency_ms": round(self.latency_seconds * 1000, 3),
            "cache_tier": self.cache_tier,
            "adapter": self.adapter,
            "request": {"method": self.method, "host": self.host, "path": self.path},
        }


def _trace_context(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    if "traceparent" not in headers and "tracestate" not in headers:
        return ()
    return tuple((name, headers[name][:512]) for name in TRACE_HEADERS if name in headers)


_NO_POLICIES = Decision.deny("no_policies")
_INTERNAL = Decision.deny("internal")


def _unavailable(decision_id: str) -> Verdict:
    return Verdict(Outcome.UNAVAILABLE, _NO_POLICIES, decision_id)


class RandomIds:
    """Decision ids: 128 bits from the OS's CSPRNG, as 32 hex digits.

    The bytes are read 4 KiB (256 ids) at a time, not 16 per call. A forked
    child drops what its parent had read (``os.register_at_fork``), so no two
    workers hand out the same ids.
    """

    __slots__ = ("__weakref__", "_buffer", "_next")

    _BATCH = 4096

    def __init__(self) -> None:
        self._buffer = b""
        self._next = 0
        ref = weakref.ref(self)

        def forget() -> None:
            ids = ref()
            if ids is not None:
                ids._buffer, ids._next = b"", 0

        os.register_at_fork(after_in_child=forget)

    def __call__(self) -> str:
        start = self._next
        if start >= len(self._buffer):
            self._buffer = os.urandom(self._BATCH)
            start = 0
        self._next = start + 16
        return self._buffer[start : start + 16].hex()


@dataclass(slots=True)
class _Progress:
    """How far one decision got: what the observers are told however it ends."""

    request: AccessRequest | None = None
    tier: str = "none"  # the cache tier that answered
    version: str = ""  # the policy version that decided


_Step = Callable[[RequestFacts, str, _Progress], Awaitable[Verdict]]


class Decider:
    """Authenticates, asks the engine (through the cache), and tells the observers."""

    def __init__(
        self,
        engines: EngineHolder,
        authenticator: Authenticator,
        clock: Clock,
        *,
        cache: DecisionCache | None = None,
        observers: Iterable[DecisionObserver] = (),
        remove_headers: Sequence[str] = (),
        new_id: Callable[[], str] | None = None,
        paths: PathOptions = DEFAULT_PATHS,
    ) -> None:
        self.engines = engines
        self.authenticator = authenticator
        self.clock = clock
        self.cache = cache
        self.observers = list(observers)
        self.remove_headers = tuple(h.lower() for h in remove_headers)
        self._new_id = new_id or RandomIds()
        self.paths = paths

    def add_observer(self, observer: DecisionObserver) -> None:
        self.observers.append(observer)

    async def decide(self, facts: RequestFacts) -> Verdict:
        """Decide one proxied request. Never raises (except cancellation, after logging)."""
        return await self._fail_closed(facts, _Progress(), self._decide_proxied)

    async def decide_request(self, request: AccessRequest, adapter: str = "api") -> Verdict:
        """Decide an already-built request (the decision API, ``meshward check``)."""
        http = request.context.get("http")
        facts = RequestFacts(
            adapter,
            request.action.id,
            str(http.get("path", "")) if isinstance(http, Mapping) else "",
        )
        return await self._fail_closed(facts, _Progress(request), self._decide_built)

    def reject(self, adapter: str, reason: str) -> Verdict:
        """Deny a request that could not even be read (malformed on the wire)."""
        started = self.clock.monotonic()
        verdict = Verdict(Outcome.DENY, Decision.deny(f"request:{reason}"), self._new_id())
        log.info(
            "malformed request denied",
            extra={"fields": {"decision_id": verdict.decision_id, "reason": reason}},
        )
        self._notify(RequestFacts(adapter, "", ""), None, verdict, "", "none", started)
        return verdict

    async def _fail_closed(self, facts: RequestFacts, progress: _Progress, step: _Step) -> Verdict:
        """The skeleton of every decision: ``step`` decides; anything it raises is a deny,
        and the observers are told in every case."""
        started = self.clock.monotonic()
        decision_id = self._new_id()
        verdict: Verdict | None = None  # until step answers: an error (fail closed)
        try:
            if not self.engines.ready:
                # Before the first version is active nothing can be decided: the
                # answer is "not yet" (the proxy may retry), never a 403 for a
                # request the policies would allow.
                verdict = _unavailable(decision_id)
                return verdict
            verdict = await step(facts, decision_id, progress)
            return verdict
        except MalformedRequest as exc:
            verdict = Verdict(Outcome.DENY, Decision.deny(f"request:{exc.code}"), decision_id)
            return verdict
        except asyncio.CancelledError:
            verdict = Verdict(Outcome.ERROR, Decision.deny("cancelled"), decision_id)
            raise
        except Exception:
            log.exception("decision failed", extra={"fields": {"decision_id": decision_id}})
            verdict = Verdict(Outcome.ERROR, _INTERNAL, decision_id)
            return verdict
        finally:
            if verdict is None:  # anything else that ended the step (never an answer)
                verdict = Verdict(Outcome.ERROR, _INTERNAL, decision_id)
            self._notify(facts, progress.request, verdict, progress.version, progress.tier, started)

    async def _decide_proxied(
        self, facts: RequestFacts, decision_id: str, progress: _Progress
    ) -> Verdict:
        try:
            who = await self.authenticator.authenticate(
                facts.peer, facts.headers.get("authorization")
            )
            built = build_request(facts, who, self.paths)
            # A JWT-SVID is good only at the destination its audience names.
            self.authenticator.bind(who, built.resource.id)
        except AuthnError as exc:
            log.info(
                "authentication failed",
                extra={"fields": {"decision_id": decision_id, "reason": exc.code}},
            )
            return Verdict(Outcome.UNAUTHENTICATED, Decision.deny(f"authn:{exc.code}"), decision_id)
        progress.request = built
        decision = await self._evaluate(built, progress)
        return self._verdict(decision, built, decision_id)

    async def _decide_built(
        self, _facts: RequestFacts, decision_id: str, progress: _Progress
    ) -> Verdict:
        request = progress.request
        if request is None:  # decide_request always gives one
            raise ValueError("no request")
        decision = await self._evaluate(request, progress)
        outcome = Outcome.ALLOW if decision.allowed else Outcome.DENY
        return Verdict(outcome, decision, decision_id, request.principal)

    def explain(self, request: AccessRequest) -> dict[str, Any]:
        """The active engine's explanation of ``request`` (only when asked; never cached)."""
        active = self.engines.active
        if active is None:
            return {"summary": "denied: no policies are active", "candidates": []}
        engine = active[0]
        if not isinstance(engine, Explainer):
            return {"summary": "this engine cannot explain its decisions", "candidates": []}
        return engine.explain(request).to_json()

    async def _evaluate(self, request: AccessRequest, progress: _Progress) -> Decision:
        """Ask the active engine (through the cache); note the tier and version answering."""
        active = self.engines.active  # the engine this check started with
        if active is None:
            return Decision.deny("no_policies")
        engine, version = active
        if self.cache is not None:
            decision, progress.tier = await self.cache.get_or_evaluate(request, engine)
        else:
            decision = engine.evaluate(request)
        progress.version = decision.policy_version or version
        return decision

    def _verdict(self, decision: Decision, request: AccessRequest, decision_id: str) -> Verdict:
        if decision.effect is Effect.ALLOW:
            return Verdict(
                Outcome.ALLOW, decision, decision_id, request.principal, self.remove_headers
            )
        if not request.identity.authenticated:
            return Verdict(Outcome.UNAUTHENTICATED, decision, decision_id, request.principal)
        return Verdict(Outcome.DENY, decision, decision_id, request.principal)

    def _notify(
        self,
        facts: RequestFacts,
        request: AccessRequest | None,
        verdict: Verdict,
        version: str,
        tier: str,
        started: float,
    ) -> None:
        if not self.observers:
            return
        record = DecisionRecord(
            verdict,
            request,
            version=version,
            cache_tier=tier,
            latency_seconds=max(self.clock.monotonic() - started, 0.0),
            timestamp=self.clock.timestamp(),
            adapter=facts.adapter,
            method=facts.method,
            host=facts.host,
            path=facts.path,
            trace_context=_trace_context(facts.headers),
        )
        for observer in self.observers:
            try:
                observer.observe(record)
            except Exception:
                log.exception("decision observer failed")
