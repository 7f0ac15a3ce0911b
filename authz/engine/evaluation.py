"""The decision engine: a bundle's policies, sliced by scope, evaluated by Cedar.

``Engine(bundle)`` prepares everything at load time: the scope index
(:mod:`authz.engine.slicing`), the entity hierarchy, the whole ``cedarpy.PolicySet``.
:meth:`Engine.evaluate` then finds the policies whose scope the request
satisfies (memoized per principal, parents, action and resource), evaluates
only those, and returns a :class:`~authz.engine.model.Decision`. It is synchronous,
has no I/O, and never raises: any failure is a deny carrying an error (fail
closed).

Each distinct candidate set is a *slice*, prepared once and memoized
(bounded): its ``PolicySet`` (built from the policies' JSON form), the
entities its policies name, and what of the context they read
(:class:`~authz.cache.keys.Projection`, the analysis the decision cache keys
on). Cedar is handed only that part of the context — most of its per-call
cost is turning the context JSON into values — unless the context holds
something Cedar refuses (then it gets all of it, and fails as it would).

An engine built for a new version of the same policies can take over the
slices of the engine it replaces (``previous``) that hold only policies the
two versions share — the same block of policies, as an object
(:mod:`authz.engine.policytable`) — so a version that changed one policy
does not make every request build its slice again after the swap.

Fail closed, also inside Cedar: a ``forbid`` policy that errors while being
evaluated might have applied, so an allow that coexists with an erroring
forbid becomes a deny, with that forbid as the reason. A ``permit`` that errors
simply grants nothing (Cedar's own semantics). Which forbids erred is found
structurally, never by reading Cedar's error text (a policy id may hold any
character, backticks included): when an allow carries errors, each candidate
forbid is evaluated on its own, and one whose lone evaluation reports an error
is an erring forbid.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import cedarpy

from authz.cache.keys import ContextReads, Projection, cedar_clean, context_reads
from authz.engine.bundle import Policy, PolicyBundle, PolicyTable, policy_set_from
from authz.engine.cedar import authorize, plain
from authz.engine.entities import EntityStore, entity_literals
from authz.engine.model import AccessRequest, Decision, Effect, EntityUid
from authz.engine.policytable import BLOCK_SIZE
from authz.engine.slicing import Hierarchy, ScopeIndex

if TYPE_CHECKING:
    from authz.engine.entities import EntitySummary
    from authz.engine.explain import Explanation

__all__ = ["Engine", "RawResult"]

DEFAULT_SLICE_CACHE = 4096
Scope = tuple[EntityUid, tuple[EntityUid, ...], EntityUid, EntityUid]


class _Slice:
    """One candidate set, ready to evaluate."""

    __slots__ = ("literals", "policy_set", "projection")

    def __init__(
        self,
        policy_set: cedarpy.PolicySet,
        literals: frozenset[EntityUid],
        projection: Projection,
    ) -> None:
        self.policy_set = policy_set
        self.literals = literals
        self.projection = projection


class RawResult:
    """Cedar's own answer for one request (before the fail-closed mapping)."""

    __slots__ = ("allowed", "errors", "reasons")

    def __init__(self, allowed: bool, reasons: tuple[str, ...], errors: tuple[str, ...]) -> None:
        self.allowed = allowed
        self.reasons = reasons
        self.errors = errors

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RawResult):
            return NotImplemented
        return (self.allowed, self.reasons, self.errors) == (
            other.allowed,
            other.reasons,
            other.errors,
        )

    def __hash__(self) -> int:
        return hash((self.allowed, self.reasons, self.errors))

    def __repr__(self) -> str:
        return f"RawResult(allowed={self.allowed}, reasons={self.reasons}, errors={self.errors})"


class Engine:
    """Evaluates requests against one :class:`PolicyBundle`; built once per bundle version."""

    def __init__(
        self,
        bundle: PolicyBundle,
        *,
        slicing: bool = True,
        slice_cache_size: int = DEFAULT_SLICE_CACHE,
        previous: Engine | None = None,
    ) -> None:
        """``previous``: an engine whose slices of shared policies this one takes over."""
        self.bundle = bundle
        self.version = bundle.version
        self.slicing = slicing
        self._policies = bundle.policies
        self._index = (
            bundle.index
            if bundle.index is not None
            else ScopeIndex.of_policies(p.json for p in bundle.policies)
        )
        self._hierarchy = Hierarchy(bundle.entity_records)
        self._store = EntityStore(bundle.entities, bundle.entity_records)
        count = len(bundle.policies)
        self._analysis = _Analysis(bundle.policies)
        self.policy_reads: Mapping[str, ContextReads] = _PolicyReads(self._analysis)
        self._slice_cache_size = max(1, slice_cache_size)
        self._slices: OrderedDict[tuple[int, ...], _Slice] = (
            OrderedDict() if previous is None else self._shared_slices(previous)
        )
        self._scopes: dict[Scope, tuple[int, ...]] = {}
        self._lock = threading.Lock()
        self._everything = tuple(range(count))

    @classmethod
    def from_bundle(cls, bundle: PolicyBundle) -> Engine:
        return cls(bundle)

    def _shared_slices(self, previous: Engine) -> OrderedDict[tuple[int, ...], _Slice]:
        """``previous``'s slices whose every policy is in a block this engine holds too.

        A block is the same object in both tables only when it crossed as a
        piece the serving process held (:mod:`authz.sources.delta`), so its
        policies — at the same positions — are the same: same ids, texts and
        JSON forms, hence the same policy set, entities and context reads.
        """
        kept: OrderedDict[tuple[int, ...], _Slice] = OrderedDict()
        if not self.slicing or not previous.slicing:
            return kept
        mine, theirs = self._policies.blocks, previous._policies.blocks
        shared = frozenset(
            number for number, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a is b
        )
        if not shared:
            return kept
        with previous._lock:
            slices = list(previous._slices.items())[-self._slice_cache_size :]

        for positions, piece in slices:
            if positions and all(i // BLOCK_SIZE in shared for i in positions):
                kept[positions] = piece
        return kept

    def literals_of(self, position: int) -> frozenset[EntityUid]:
        """The entities the policy at ``position`` names (analysed once)."""
        return self._analysis.literals_of(position)

    def reads_of(self, position: int) -> ContextReads:
        """What the policy at ``position`` reads from the context (analysed once)."""
        return self._analysis.reads_of(position)

    # -- which policies apply -------------------------------------------------

    def _positions(self, request: AccessRequest) -> tuple[int, ...]:
        if not self.slicing:
            return self._everything
        identity = request.identity
        scope = (identity.principal, identity.parents, request.action, request.resource)
        found = self._scopes.get(scope)
        if found is None:
            hierarchy = self._hierarchy
            principal = identity.principal
            found = self._index.candidates(
                (principal, hierarchy.closure(principal, identity.parents)),
                (request.action, hierarchy.closure(request.action)),
                (request.resource, hierarchy.closure(request.resource)),
            )
            if len(self._scopes) >= 4 * self._slice_cache_size:
                self._scopes.clear()  # bounded; rebuilt from the index as requests come
            self._scopes[scope] = found
        return found

    def candidates(self, request: AccessRequest) -> tuple[Policy, ...]:
        """The policies whose scope ``request`` satisfies (each with ``id`` and ``json``)."""
        return tuple(self._policies[i] for i in self._positions(request))

    def _slice(self, positions: tuple[int, ...]) -> _Slice:
        with self._lock:
            found = self._slices.get(positions)
            if found is not None:
                self._slices.move_to_end(positions)
                return found
        policy_set = (
            self.bundle.policy_set
            if positions == self._everything
            else policy_set_from([self._policies[i] for i in positions])
        )
        built = _Slice(
            policy_set,
            frozenset(_union(self.literals_of(i) for i in positions)),
            Projection.of((self.reads_of(i) for i in positions), ()),
        )
        with self._lock:
            self._slices[positions] = built
            while len(self._slices) > self._slice_cache_size:
                self._slices.popitem(last=False)
        return built

    # -- evaluation ------------------------------------------------------------

    def evaluate_raw(self, request: AccessRequest) -> RawResult:
        """Cedar's answer on the candidate policies (may raise on malformed input)."""
        return self._evaluate(request, self._positions(request))

    def _evaluate(self, request: AccessRequest, positions: tuple[int, ...]) -> RawResult:
        context = request.context
        clean = cedar_clean(context)
        if not positions and clean:
            return RawResult(False, (), ())
        # A context Cedar refuses is handed over whole, so it fails as it would.
        piece = self._slice(positions)
        if clean:
            context = piece.projection.narrow(context)
        cedar_context = plain(context)
        cedar_request = {
            "principal": request.principal.to_cedar(),
            "action": request.action.to_cedar(),
            "resource": request.resource.to_cedar(),
            "context": json.dumps(cedar_context),
        }
        allowed, reasons, errors = authorize(
            cedar_request,
            piece.policy_set,
            self._store.for_request(request, piece.literals, cedar_context),
        )
        return RawResult(allowed, tuple(sorted(reasons)), tuple(sorted(errors)))

    def erring_forbids(self, request: AccessRequest) -> tuple[str, ...]:
        """The ids of the candidate forbids that error on ``request`` (may raise).

        Each forbid is evaluated alone: a one-policy set reports an error exactly
        when that policy erred, so no error message is ever parsed.
        """
        failed: list[str] = []
        for i in self._positions(request):
            if self._policies.effect(i) == "forbid" and self._evaluate(request, (i,)).errors:
                failed.append(self._policies.ids[i])
        return tuple(sorted(failed))

    def evaluate(self, request: AccessRequest) -> Decision:
        """The decision for ``request``; never raises (an error is a deny)."""
        try:
            raw = self.evaluate_raw(request)
            failed = self.erring_forbids(request) if raw.allowed and raw.errors else ()
        except Exception as exc:
            detail = str(exc)[:200]
            return Decision.deny(
                f"evaluation failed: {type(exc).__name__}: {detail}", policy_version=self.version
            )
        return self.decide(raw, failed)

    def decide(self, raw: RawResult, failed_forbids: Sequence[str]) -> Decision:
        """Map Cedar's answer to a Decision, failing closed on an erring forbid.

        ``failed_forbids`` are the forbids that erred (:meth:`erring_forbids`).
        """
        if raw.allowed:
            if failed_forbids:
                return Decision(
                    Effect.DENY,
                    tuple(sorted(failed_forbids)),
                    (*raw.errors, "a forbid policy could not be evaluated: denied (fail closed)"),
                    self.version,
                )
            return Decision(Effect.ALLOW, raw.reasons, raw.errors, self.version)
        return Decision(Effect.DENY, raw.reasons, raw.errors, self.version)

    def evaluation_inputs(
        self, request: AccessRequest
    ) -> tuple[tuple[tuple[int, Policy], ...], cedarpy.Entities, list[EntitySummary]]:
        """What :meth:`evaluate_raw` hands Cedar: the candidates with their positions,
        the entities, and a summary of the entities reachable from the request."""
        positions = self._positions(request)
        literals = _union(self.literals_of(i) for i in positions)
        return (
            tuple((i, self._policies[i]) for i in positions),
            self._store.for_request(request, literals),
            self._store.summary(request, literals),
        )

    def explain(self, request: AccessRequest) -> Explanation:
        """Why ``request`` gets its decision (:mod:`authz.engine.explain`; only when asked)."""
        from authz.engine.explain import explain  # noqa: PLC0415 - keeps the decision path lean

        return explain(self, request)

    def dispose(self, batch: int = 256) -> None:
        """Take this engine apart, ``batch`` objects at a time, yielding the GIL in between.

        For an engine nothing uses any more (:func:`authz.engine.retire.retire`): freeing
        a large one in one go holds the GIL for tenths of a second.
        """
        pieces: list[Any] = [*self._analysis.release(), *self._policies.release()]
        with self._lock:
            pieces.extend(self._slices.values())
            self._slices.clear()
        pieces.extend(self._index.release())
        self._scopes = {}
        self.policy_reads = MappingProxyType({})
        self._everything = ()
        while pieces:
            del pieces[-batch:]
            time.sleep(0)

    def evaluate_many(self, requests: Sequence[AccessRequest]) -> list[Decision]:
        return [self.evaluate(r) for r in requests]


class _Analysis:
    """What each policy names and reads, worked out from its JSON form on first use.

    A policy is analysed when a slice that holds it is first built, so a new
    engine costs nothing per policy up front.
    """

    __slots__ = ("_literals", "_reads", "policies")

    def __init__(self, policies: PolicyTable) -> None:
        self.policies = policies
        self._literals: list[frozenset[EntityUid] | None] = [None] * len(policies)
        self._reads: list[ContextReads | None] = [None] * len(policies)

    def literals_of(self, position: int) -> frozenset[EntityUid]:
        found = self._literals[position]
        if found is None:
            found = self._literals[position] = entity_literals(self.policies[position].json)
        return found

    def reads_of(self, position: int) -> ContextReads:
        found = self._reads[position]
        if found is None:
            found = self._reads[position] = context_reads(self.policies[position].json)
        return found

    def release(self) -> list[object]:
        pieces: list[object] = [*self._literals, *self._reads]
        self._literals, self._reads = [], []
        return pieces


class _PolicyReads(Mapping[str, ContextReads]):
    """``Engine.policy_reads``: each policy's context reads by id, analysed on first use."""

    __slots__ = ("_analysis", "_positions")

    def __init__(self, analysis: _Analysis) -> None:
        self._analysis = analysis
        self._positions: dict[str, int] | None = None

    def _where(self) -> dict[str, int]:
        positions = self._positions
        if positions is None:
            ids = self._analysis.policies.ids
            positions = self._positions = dict(zip(ids, range(len(ids)), strict=True))
        return positions

    def __getitem__(self, policy_id: str) -> ContextReads:
        return self._analysis.reads_of(self._where()[policy_id])

    def __contains__(self, policy_id: object) -> bool:
        return policy_id in self._where()

    def __iter__(self) -> Iterator[str]:
        return iter(self._where())

    def __len__(self) -> int:
        return len(self._where())


def _union(sets: Iterable[frozenset[EntityUid]]) -> set[EntityUid]:
    out: set[EntityUid] = set()
    for item in sets:
        out |= item
    return out
