"""The scope index: which policies can apply to a request, found without evaluating any.

A policy's scope (``principal``, ``action``, ``resource`` constraints) is a
conjunction Cedar checks before the conditions. Each constraint is indexed
under a key; a request is expanded into every key that would satisfy a
constraint (``in`` follows the entity hierarchy: the entity itself and all its
ancestors), and the candidates are the policies filed under a matching
(principal key, action key, resource key) triple. A policy outside the
candidates has a false scope, so it can neither be satisfied nor err:
evaluating the candidates alone gives the same decision, reasons and errors
as evaluating the whole set (property-tested).

Lookups are O(matching keys), independent of the number of policies.

The index is built where the bundle is checked (the PDP's checking child
process) and crosses to the serving process ready-made, in shards (by
principal key) that stay encoded until a request first needs one: taking a
new index into service costs the serving process almost nothing, and each
shard decodes in a fraction of a millisecond. A shard is a
:class:`~authz.engine.pieces.Piece`: a new version whose change leaves a
shard as it was shares it (decoded or not) with the version before it, and
the checking child does not send it again (:mod:`authz.sources.delta`).
"""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from authz.engine.model import EntityUid
from authz.engine.pieces import Piece, content_digest

__all__ = ["Hierarchy", "Key", "ScopeIndex", "ScopeKeys", "scope_keys"]

# ("*",) any; ("==", type, id); ("in", type, id); ("is", type); ("is-in", type, ptype, pid)
Key = tuple[str, ...]
# One policy's keys: (principal keys, action keys, resource keys).
ScopeKeys = tuple[tuple[Key, ...], tuple[Key, ...], tuple[Key, ...]]
_ANY: Key = ("*",)


class Hierarchy:
    """Ancestors in the static entity graph (entities.json plus the schema's actions)."""

    def __init__(self, records: Iterable[Mapping[str, Any]]) -> None:
        self._parents: dict[EntityUid, tuple[EntityUid, ...]] = {}
        for record in records:
            uid = _uid(record["uid"])
            self._parents[uid] = tuple(_uid(p) for p in record.get("parents", ()))
        self._memo: dict[EntityUid, frozenset[EntityUid]] = {}

    def ancestors(self, uid: EntityUid) -> frozenset[EntityUid]:
        """Every entity ``uid`` is ``in`` transitively, excluding itself."""
        if uid not in self._parents:
            return frozenset()  # not a static entity: nothing to memoize (keeps memory bounded)
        found = self._memo.get(uid)
        if found is None:
            seen: set[EntityUid] = set()
            stack = list(self._parents.get(uid, ()))
            while stack:
                current = stack.pop()
                if current not in seen:
                    seen.add(current)
                    stack.extend(self._parents.get(current, ()))
            found = frozenset(seen)
            self._memo[uid] = found
        return found

    def closure(self, uid: EntityUid, parents: Sequence[EntityUid] = ()) -> frozenset[EntityUid]:
        """``uid``, its request-given ``parents``, and every static ancestor of either."""
        out: set[EntityUid] = {uid}
        out |= self.ancestors(uid)
        for parent in parents:
            out.add(parent)
            out |= self.ancestors(parent)
        return frozenset(out)


def _uid(value: Mapping[str, Any]) -> EntityUid:
    return EntityUid(str(value["type"]), str(value["id"]))


def _entity(value: Mapping[str, Any]) -> EntityUid:
    inner = value.get("entity")
    return _uid(inner if isinstance(inner, Mapping) else value)


def constraint_keys(constraint: Mapping[str, Any]) -> list[Key]:
    """The index keys of a principal, action or resource constraint in Cedar's JSON form.

    An action's ``in [..]`` (``entities``) files the policy under each entity;
    Cedar gives ``is`` only to principals and resources.
    """
    op = constraint.get("op")
    if op == "All":
        return [_ANY]
    if op == "==":
        uid = _entity(constraint)
        return [("==", uid.type, uid.id)]
    if op == "in":
        entities = constraint.get("entities")
        targets = [_uid(e) for e in entities] if entities is not None else [_entity(constraint)]
        return [("in", t.type, t.id) for t in targets]
    if op == "is":
        entity_type = str(constraint["entity_type"])
        inside = constraint.get("in")
        if inside is None:
            return [("is", entity_type)]
        uid = _entity(inside)
        return [("is-in", entity_type, uid.type, uid.id)]
    raise ValueError(f"unsupported scope constraint: {op!r}")


def request_keys(uid: EntityUid, closure: frozenset[EntityUid]) -> list[Key]:
    """Every key whose constraint ``uid`` satisfies; ``closure`` is ``uid`` and its ancestors."""
    keys: list[Key] = [_ANY, ("==", uid.type, uid.id), ("is", uid.type)]
    for entity in closure:
        keys.append(("in", entity.type, entity.id))
        keys.append(("is-in", uid.type, entity.type, entity.id))
    return keys


def scope_keys(body: Mapping[str, Any]) -> ScopeKeys:
    """The index keys of one policy in Cedar's JSON form (raises ValueError if unsupported)."""
    return (
        tuple(constraint_keys(body["principal"])),
        tuple(constraint_keys(body["action"])),
        tuple(constraint_keys(body["resource"])),
    )


# Per principal key: the policies (by position) under each (action key, resource key).
_ByPrincipal = dict[Key, dict[tuple[Key, Key], tuple[int, ...]]]
_SHARD_SIZE = 64  # principal keys per shard: a fraction of a millisecond to decode


def _shard_of(key: Key, shards: int) -> int:
    """The shard of a principal key: a hash that is the same in every process."""
    return zlib.crc32("\x1f".join(key).encode("utf-8", "surrogatepass")) % shards


class _Shard(Piece):
    """Some principal keys' part of the index: decoded from its bytes on first use, then kept."""

    __slots__ = ("_data", "_digest", "_table")

    def __init__(
        self,
        table: _ByPrincipal | None = None,
        data: bytes | None = None,
        digest: bytes | None = None,
    ) -> None:
        if table is None and data is None:
            raise ValueError("a shard needs its table or its bytes")
        self._table = table
        self._data = data
        self._digest = digest

    def table(self) -> _ByPrincipal:
        table = self._table
        if table is None:
            data = self._data
            if data is None:  # decoded by another thread meanwhile (set before dropped)
                return self._table  # type: ignore[return-value]
            table = pickle.loads(data)  # noqa: S301 - pickled by this class, in our own child
            self._table = table
            self._data = None
        return table

    def _bytes(self) -> bytes:
        data = self._data
        if data is None:
            data = pickle.dumps(self._table, protocol=pickle.HIGHEST_PROTOCOL)
        return data

    @property
    def digest(self) -> bytes:
        digest = self._digest
        if digest is None:
            # Of the content, not of its pickle (which depends on object identities).
            digest = self._digest = content_digest(repr(self.table()).encode())
        return digest

    def __reduce__(self) -> tuple[Any, ...]:
        return (_shard_from_wire, (self._bytes(), self.digest))


def _shard_from_wire(data: bytes, digest: bytes) -> _Shard:
    return _Shard(data=data, digest=digest)


class ScopeIndex:
    """Policies (by position) filed under (principal key, action key, resource key).

    Sharded by principal key. An index that crossed from another process
    keeps each shard as the bytes it came in until a request needs it, so
    taking a new index into service decodes nothing up front.
    """

    def __init__(self, scopes: Iterable[ScopeKeys]) -> None:
        """``scopes``: each policy's :func:`scope_keys`, in order."""
        table: dict[Key, dict[tuple[Key, Key], list[int]]] = {}
        actions: set[Key] = set()
        resources: set[Key] = set()
        size = 0
        for position, (p_keys, a_keys, r_keys) in enumerate(scopes):
            size += 1
            actions.update(a_keys)
            resources.update(r_keys)
            for p in p_keys:
                inner = table.setdefault(p, {})
                for a in a_keys:
                    for r in r_keys:
                        inner.setdefault((a, r), []).append(position)
        count = max(1, len(table) // _SHARD_SIZE)
        shards: list[_ByPrincipal] = [{} for _ in range(count)]
        for p, inner in table.items():
            shards[_shard_of(p, count)][p] = {k: tuple(v) for k, v in inner.items()}
        self._shards: list[_Shard] = [_Shard(shard) for shard in shards]
        self._action_keys = frozenset(actions)
        self._resource_keys = frozenset(resources)
        self.size = size

    @classmethod
    def of_policies(cls, bodies: Iterable[Mapping[str, Any]]) -> ScopeIndex:
        """The index of policies given in Cedar's JSON form, in order."""
        return cls(scope_keys(body) for body in bodies)

    @property
    def shards(self) -> tuple[Piece, ...]:
        """The shards, in order: what another version may share."""
        return tuple(self._shards)

    def _shard(self, number: int) -> _ByPrincipal:
        return self._shards[number].table()

    def _decoded(self) -> list[_ByPrincipal]:
        return [self._shard(i) for i in range(len(self._shards))]

    def __reduce__(self) -> tuple[Any, ...]:
        # Sorted, so that equal indexes pickle alike whatever order the sets hold.
        return (
            _index_from_wire,
            (
                tuple(self._shards),
                tuple(sorted(self._action_keys)),
                tuple(sorted(self._resource_keys)),
                self.size,
            ),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ScopeIndex):
            return NotImplemented
        return (
            self._decoded(),
            self._action_keys,
            self._resource_keys,
            self.size,
        ) == (other._decoded(), other._action_keys, other._resource_keys, other.size)

    __hash__ = None  # type: ignore[assignment]

    def release(self) -> list[object]:
        """Empty the index and return its shards (to be freed a piece at a time).

        A shard another version shares stays whole: pieces are never emptied.
        """
        pieces: list[object] = list(self._shards)
        self._shards = [_Shard({})]
        return pieces

    def candidates(
        self,
        principal: tuple[EntityUid, frozenset[EntityUid]],
        action: tuple[EntityUid, frozenset[EntityUid]],
        resource: tuple[EntityUid, frozenset[EntityUid]],
    ) -> tuple[int, ...]:
        """Positions of the policies whose scope the request satisfies, ascending.

        Each argument is an entity and its closure (itself plus ancestors).
        """
        a_keys = [k for k in request_keys(*action) if k in self._action_keys]
        r_keys = [k for k in request_keys(*resource) if k in self._resource_keys]
        if not a_keys or not r_keys:
            return ()
        found: set[int] = set()
        count = len(self._shards)
        for p in request_keys(*principal):
            inner = self._shard(_shard_of(p, count)).get(p)
            if not inner:
                continue
            for a in a_keys:
                for r in r_keys:
                    bucket = inner.get((a, r))
                    if bucket:
                        found.update(bucket)
        return tuple(sorted(found))


def _index_from_wire(
    shards: tuple[_Shard, ...], actions: tuple[Key, ...], resources: tuple[Key, ...], size: int
) -> ScopeIndex:
    index = ScopeIndex.__new__(ScopeIndex)
    index._shards = list(shards)
    index._action_keys = frozenset(actions)
    index._resource_keys = frozenset(resources)
    index.size = size
    return index
