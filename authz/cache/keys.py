"""Cache keys that are both safe and reusable (pure).

A cached decision may be served for a request only if evaluating that request
would give the same answer. Cedar decides from the policy set, the principal
(with its parents and attributes), the action, the resource, the static
entities and the context. The policy set and the static entities are fixed by
the policy *version*; the rest comes from the request. Of the context, only
what the applicable policies read can matter, so the key holds just that:

- :func:`context_reads` walks one policy's JSON form (``cedarpy.policies_to_json_str``)
  once, when a version is loaded, and returns the context paths it reads:
  ``context.http.path`` reads ``("http", "path")``; ``context.http has "foo"``
  tests the presence of ``("http", "foo")``. Where the context is used in a way
  that cannot be narrowed (``context`` itself compared, passed or iterated; a
  record compared or tested whole) the whole record that is used is read.
- :class:`Projection` merges the reads of a candidate set (computed once per
  set and memoised) and extracts them from a request's context. A value that is
  not a plain record (an entity reference, an extension value, a set, ...) is
  taken whole at the point the walk meets it, so an attribute read through it
  is still covered by the policy version plus that value.
- :class:`KeySpace` turns (version, request, candidates) into a key, or
  ``None`` when the decision must not be cached. The key is a tuple of the
  deciding facts themselves (no encoding, no hash on the request path: the
  in-process tier is a dict on it); every value in it is tagged by kind
  (:func:`freeze`), so two keys are equal exactly when the facts are, and
  ``True`` never meets ``1``. :func:`storage_key` digests a key for a shared
  tier (Redis), only when a request reaches it. A key is ``None`` when it depends on time (a policy
  reads ``context.now`` or another attribute named in ``time_attributes``), a
  value in the key cannot be encoded, or the request holds a value Cedar
  rejects whatever the policies read (a null, a float, an integer beyond 64
  bits, ...): its fresh evaluation fails, so it must never share an answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, cast

from authz.engine.cedar import plain
from authz.engine.model import AccessRequest, EntityUid

__all__ = [
    "DEFAULT_TIME_ATTRIBUTES",
    "KEY_FORMAT",
    "CacheKey",
    "ContextPath",
    "ContextReads",
    "KeySpace",
    "Projection",
    "cedar_clean",
    "context_reads",
    "freeze",
    "storage_key",
]

KEY_FORMAT = "k2"
"""Changes whenever what goes into a key changes, so old keys are never reused."""

DEFAULT_TIME_ATTRIBUTES = frozenset(
    {"now", "time", "timestamp", "current_time", "request_time", "datetime"}
)
"""Context attribute names that carry the current time: reading one makes a decision uncacheable."""

ContextPath = tuple[str, ...]
"""Attribute names from the context root; ``()`` is the whole context."""

CacheKey = tuple[Hashable, ...]
"""``(version, principal type, principal id, parents, attributes, action type,
action id, resource type, resource id, projection fingerprint, context reads)``."""

_LEAVES = frozenset({"Value", "Slot", "Unknown"})


@dataclass(frozen=True, slots=True)
class ContextReads:
    """What one policy (or a union of policies) reads from the context."""

    values: frozenset[ContextPath] = frozenset()
    presence: frozenset[ContextPath] = frozenset()

    def __or__(self, other: ContextReads) -> ContextReads:
        return ContextReads(self.values | other.values, self.presence | other.presence)


def context_reads(policy: Mapping[str, Any]) -> ContextReads:
    """The context paths a policy in Cedar's JSON form reads (scope and conditions)."""
    values: set[ContextPath] = set()
    presence: set[ContextPath] = set()
    for condition in policy.get("conditions", ()):
        _walk(condition.get("body"), values, presence)
    return ContextReads(frozenset(values), frozenset(presence))


def _context_chain(expr: Any) -> ContextPath | None:
    """``context.a.b`` -> ``("a", "b")``; ``context`` -> ``()``; anything else -> None."""
    attrs: list[str] = []
    while isinstance(expr, Mapping) and len(expr) == 1:
        if expr.get("Var") == "context":
            return tuple(reversed(attrs))
        node = expr.get(".")
        if not isinstance(node, Mapping) or not isinstance(node.get("attr"), str):
            return None
        attrs.append(node["attr"])
        expr = node.get("left")
    return None


def _walk(expr: Any, values: set[ContextPath], presence: set[ContextPath]) -> None:
    if isinstance(expr, list):
        for item in expr:
            _walk(item, values, presence)
        return
    if not isinstance(expr, Mapping):
        return
    if len(expr) == 1:
        ((op, arg),) = expr.items()
        if op in _LEAVES:
            return
        if op == "Var":
            if arg == "context":
                values.add(())  # the context used whole
            return
        if op in (".", "has") and isinstance(arg, Mapping) and isinstance(arg.get("attr"), str):
            base = _context_chain(arg.get("left"))
            if base is not None:
                (values if op == "." else presence).add((*base, arg["attr"]))
                return
            _walk(arg.get("left"), values, presence)
            return
        if op == "Record" and isinstance(arg, Mapping):
            # Keys are attribute names chosen by the author, not operators.
            for item in arg.values():
                _walk(item, values, presence)
            return
    # Every other operator: its operands are somewhere in its values. A context
    # path that reaches here directly (``context.r == {...}``) is caught by the
    # ``.`` branch above with the whole record ``r`` as the read value.
    for item in expr.values():
        _walk(item, values, presence)


_SCALARS = (str, int, bool, type(None))
_MAPPINGS = (dict, MappingProxyType)


def _is_record(value: Any) -> bool:
    if type(value) not in _MAPPINGS and (type(value) in _SCALARS or not isinstance(value, Mapping)):
        return False
    if "__entity" in value or "__extn" in value:
        return False
    # {"type": ..., "id": ...} may be read as an entity reference: keep it whole.
    return not (len(value) == 2 and "type" in value and "id" in value)


def _mentions(value: Any, names: Collection[str]) -> bool:
    if isinstance(value, Mapping):
        return any(k in names or _mentions(v, names) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_mentions(v, names) for v in value)
    return False


# Tags of frozen values; the extract markers below use other letters.
_BOOL, _LIST, _RECORD = "b", "l", "d"


def freeze(value: Any) -> Hashable:
    """``value`` as Cedar sees it (:func:`authz.engine.cedar.plain`), hashable and
    tagged by kind: a string or an integer is itself; a boolean is ``("b", v)``
    (``True == 1`` in Python, never for Cedar), a record ``("d", sorted items)``,
    a set or list ``("l", items)``. Anything else (which :func:`cedar_clean`
    refuses) raises ``TypeError``. For what it accepts, equal results mean
    equal values for Cedar.
    """
    kind = type(value)
    if kind is str or kind is int:
        return cast(Hashable, value)
    if kind is dict or kind is MappingProxyType:
        # The common record (attributes, peer): no copy through plain() first.
        items: list[tuple[str, Hashable]] = []
        for name, item in value.items():
            if type(name) is not str:
                raise TypeError("record keys must be strings")
            item_kind = type(item)
            items.append((name, item if item_kind is str or item_kind is int else freeze(item)))
        items.sort()  # names are distinct: values are never compared
        return (_RECORD, tuple(items))
    return _frozen(plain(value))


def _frozen(value: Any) -> Hashable:
    kind = type(value)
    if kind is str or kind is int:
        return cast(Hashable, value)
    if kind is bool:
        return (_BOOL, value)
    if kind is dict:
        return (_RECORD, tuple(sorted((k, _frozen(v)) for k, v in value.items())))
    if kind is list:
        return (_LIST, tuple(_frozen(v) for v in value))
    raise TypeError(f"cannot key a {kind.__name__}")


_I64 = (-(2**63), 2**63 - 1)


def cedar_clean(value: Any) -> bool:
    """Whether Cedar can take ``value`` whole: no null, no float, integers in 64 bits,
    no extension escapes (checked only by Cedar itself), well-formed entity escapes.

    A request carrying anything else fails to build in Cedar whatever the policies
    read, so no projection of it may share a key with a request that builds.
    """
    kind = type(value)
    if kind is str or kind is bool:
        return True
    if kind is int:
        return bool(_I64[0] <= value <= _I64[1])
    if (
        (kind is dict or kind is MappingProxyType)
        and "__extn" not in value
        and ("__entity" not in value)
    ):
        # The common shape (headers, claims): a plain dict, checked without a call per string.
        for key, item in value.items():
            if type(key) is not str:
                return False
            if type(item) is not str and not cedar_clean(item):
                return False
        return True
    if isinstance(value, EntityUid):
        return True
    if isinstance(value, Mapping):
        if "__extn" in value:
            return False
        entity = value.get("__entity")
        if entity is not None:
            return (
                len(value) == 1
                and isinstance(entity, Mapping)
                and isinstance(entity.get("type"), str)
                and isinstance(entity.get("id"), str)
            )
        return all(type(k) is str and cedar_clean(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return all(cedar_clean(v) for v in value)
    return False


class _TimeDependent(Exception):
    """Internal: the projected context carries the current time."""


@dataclass(frozen=True, slots=True)
class Projection:
    """The merged context reads of one candidate set, ready to extract.

    ``values`` holds no path that another value path already covers, and
    ``presence`` no path that a value path covers; both are sorted so that
    the same set of policies always projects in the same order.
    """

    values: tuple[ContextPath, ...]
    presence: tuple[ContextPath, ...]
    time_dependent: bool
    time_attributes: frozenset[str]
    fingerprint: str

    @classmethod
    def of(
        cls,
        reads: Iterable[ContextReads],
        time_attributes: Collection[str] = DEFAULT_TIME_ATTRIBUTES,
    ) -> Projection:
        merged = ContextReads()
        for item in reads:
            merged = merged | item
        names = frozenset(time_attributes)
        values = sorted(merged.values, key=lambda p: (len(p), p))
        kept: list[ContextPath] = []
        for path in values:
            if not any(path[: len(k)] == k for k in kept):
                kept.append(path)
        presence = sorted(p for p in merged.presence if not any(p[: len(k)] == k for k in kept))
        time_dependent = any(seg in names for path in kept for seg in path)
        kept.sort()
        fingerprint = hashlib.blake2b(
            json.dumps([kept, presence]).encode(), digest_size=8
        ).hexdigest()
        return cls(tuple(kept), tuple(presence), time_dependent, names, fingerprint)

    def narrow(self, context: Mapping[str, Any]) -> Mapping[str, Any]:
        """``context`` cut down to what these policies read, for evaluation.

        Every read path is kept with its value whole, with the records on the
        way to it (so ``has`` and missing attributes answer as before); a value
        that is not a plain record is kept whole where the walk meets it.
        Evaluating the policies on the result gives what they give on the
        whole context, provided the whole context is one Cedar accepts
        (:func:`cedar_clean`): the caller checks that.
        """
        if () in self.values:
            return context
        out: dict[str, Any] = {}
        for path in self.values:
            _copy_path(context, path, out, whole=True)
        for path in self.presence:  # only that it is there: a record may stay empty
            _copy_path(context, path, out, whole=False)
        return out

    def extract(self, context: Mapping[str, Any]) -> tuple[Hashable, ...]:
        """What of ``context`` goes into the key: one entry per path, in order.

        An entry is the frozen value read (:func:`freeze`), ``("m",)`` for a
        missing attribute, ``("o", depth, value)`` for a non-record met on the
        way, ``("h", bool)`` for a presence test. Raises :class:`_TimeDependent`
        when a record read whole carries a time attribute (its decision could
        then change from one second to the next).
        """
        out: list[Hashable] = []
        for path in self.values:
            found, depth, value = _follow(context, path)
            if found:
                kind = type(value)
                if kind is str or kind is int:
                    out.append(value)
                    continue
                if self.time_attributes and _mentions(value, self.time_attributes):
                    raise _TimeDependent
                out.append(freeze(value))
            elif depth < 0:
                out.append(_MISSING)
            else:
                out.append(("o", depth, freeze(value)))
        for path in self.presence:
            found, depth, value = _follow(context, path[:-1])
            if found and _is_record(value):
                out.append(("h", path[-1] in value))
            elif found:
                out.append(("o", len(path) - 1, freeze(value)))
            elif depth < 0:
                out.append(_MISSING)
            else:
                out.append(("o", depth, freeze(value)))
        return tuple(out)


_MISSING = ("m",)
_UNKEYABLE = ("unkeyable",)  # a marker, compared by identity


def _copy_path(
    context: Mapping[str, Any], path: ContextPath, out: dict[str, Any], *, whole: bool
) -> None:
    value: Any = context
    target = out
    for depth, name in enumerate(path):
        if name not in value:
            return
        value = value[name]
        record = _is_record(value)
        if not record or (whole and depth == len(path) - 1):
            target[name] = value  # the read value, or a non-record taken whole
            return
        if depth == len(path) - 1:  # presence of a record: the record, not its contents
            target.setdefault(name, {})
            return
        existing = target.get(name)
        if existing is value:
            return  # already taken whole
        if not isinstance(existing, dict):
            existing = target[name] = {}
        target = existing


def _follow(context: Mapping[str, Any], path: ContextPath) -> tuple[bool, int, Any]:
    """Walk ``path``: (True, _, value) at the end; (False, -1, None) when an
    attribute is missing; (False, depth, value) when a non-record stops the walk."""
    value: Any = context
    for depth, name in enumerate(path):
        if not _is_record(value):
            return False, depth, value
        if name not in value:
            return False, -1, None
        value = value[name]
    return True, len(path), value


class KeySpace:
    """Keys for one policy version.

    ``policies`` maps each policy id to its JSON form; the analysis runs here,
    once. ``projection`` memoises one :class:`Projection` per candidate set.
    """

    def __init__(
        self,
        version: str,
        policies: Mapping[str, Mapping[str, Any]],
        *,
        time_attributes: Collection[str] = DEFAULT_TIME_ATTRIBUTES,
        max_projections: int = 4096,
        reads: Mapping[str, ContextReads] | None = None,
    ) -> None:
        """``reads``: the policies' context reads when already known (the engine's,
        an immutable mapping analysed on first use: it is used as it is, and
        ``policies`` is then not read)."""
        self.version = version
        self._reads: Mapping[str, ContextReads] = (
            reads
            if reads is not None
            else {pid: context_reads(est) for pid, est in policies.items()}
        )
        self._time = frozenset(time_attributes)
        self._max = max_projections
        self._memo: dict[tuple[str, ...], Projection] = {}
        self._every: Projection | None = None
        self.scope_memo: dict[Hashable, Projection] = {}
        self._attributes: dict[int, tuple[Mapping[str, Any], Hashable]] = {}

    @property
    def _all(self) -> Projection:
        """Every policy's reads (worked out on first use: only an unknown id needs it)."""
        every = self._every
        if every is None:
            every = self._every = Projection.of(self._reads.values(), self._time)
        return every

    def remember_scope(self, scope: Hashable, projection: Projection) -> None:
        """Memoise the projection of a request scope's candidates (bounded like them)."""
        if len(self.scope_memo) >= self._max:
            self.scope_memo.clear()
        self.scope_memo[scope] = projection

    def projection(self, candidates: Iterable[str] | None = None) -> Projection:
        """The projection for ``candidates`` (policy ids); every policy when ``None``.

        Memoised by the ids as given (the engine lists a candidate set in one
        order). An id this key space does not know makes it fall back to every
        policy (a superset of reads is always safe).
        """
        if candidates is None:
            return self._all
        ids = candidates if isinstance(candidates, tuple) else tuple(candidates)
        hit = self._memo.get(ids)
        if hit is not None:
            return hit
        if not all(i in self._reads for i in ids):
            return self._all
        projection = Projection.of((self._reads[i] for i in ids), self._time)
        if len(self._memo) >= self._max:
            self._memo.clear()
        self._memo[ids] = projection
        return projection

    def _frozen_attributes(self, attributes: Mapping[str, Any]) -> Hashable:
        """:func:`freeze` of a principal's attributes, or ``_UNKEYABLE`` when Cedar would
        refuse them or they cannot be keyed.

        Worked out once per attributes object when it is an immutable record of
        strings (an authenticated workload's identity is made once and shared by
        all its requests); the memo holds the object itself, so its ``id`` is
        never reused while remembered.
        """
        found = self._attributes.get(id(attributes))
        if found is not None and found[0] is attributes:
            return found[1]
        frozen: Hashable = _UNKEYABLE
        if cedar_clean(attributes):
            with contextlib.suppress(TypeError):  # not keyable: stays _UNKEYABLE
                frozen = freeze(attributes)
        if type(attributes) is not MappingProxyType or not all(
            type(v) is str for v in attributes.values()
        ):
            return frozen  # something in it could still change: not remembered
        if len(self._attributes) >= self._max:
            self._attributes.clear()
        self._attributes[id(attributes)] = (attributes, frozen)
        return frozen

    def key(
        self, request: AccessRequest, candidates: Iterable[str] | None = None
    ) -> CacheKey | None:
        """The cache key of ``request``, or ``None`` when it must not be cached."""
        return self.key_for(request, self.projection(candidates))

    def key_for(self, request: AccessRequest, projection: Projection) -> CacheKey | None:
        """:meth:`key` with the candidates' projection already looked up."""
        if projection.time_dependent:
            return None
        identity = request.identity
        attributes = identity.attributes
        frozen_attributes = self._frozen_attributes(attributes) if attributes else None
        if frozen_attributes is _UNKEYABLE or not cedar_clean(request.context):
            return None  # Cedar rejects the request whole: always evaluated afresh
        try:
            reads = projection.extract(request.context)
        except (_TimeDependent, TypeError):
            return None
        principal, action, resource = identity.principal, request.action, request.resource
        parents = identity.parents
        return (
            self.version,
            principal.type,
            principal.id,
            tuple(sorted({(p.type, p.id) for p in parents})) if parents else (),
            frozen_attributes,
            action.type,
            action.id,
            resource.type,
            resource.id,
            projection.fingerprint,
            reads,
        )


def storage_key(key: CacheKey) -> str:
    """``key`` for a tier shared by processes (Redis): ``<version>:<digest>``.

    The digest is over a canonical JSON encoding of the key, which is
    one-to-one on keys (tuples become arrays; strings, integers and booleans
    stay apart), prefixed by :data:`KEY_FORMAT`.
    """
    encoded = json.dumps(
        [KEY_FORMAT, *key], separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8", "surrogatepass")
    return f"{key[0]}:{hashlib.blake2b(encoded, digest_size=20).hexdigest()}"
