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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from authz.engine.model import EntityUid

__all__ = ["Hierarchy", "ScopeIndex", "Key"]

# ("*",) any; ("==", type, id); ("in", type, id); ("is", type); ("is-in", type, ptype, pid)
Key = tuple[str, ...]
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


class ScopeIndex:
    """Policies (by position) filed under (principal key, action key, resource key)."""

    def __init__(self, scopes: Sequence[Mapping[str, Any]]) -> None:
        """``scopes`` are the policies' Cedar JSON bodies, in order."""
        table: dict[tuple[Key, Key, Key], list[int]] = {}
        principal_seen: set[Key] = set()
        action_seen: set[Key] = set()
        resource_seen: set[Key] = set()
        for position, body in enumerate(scopes):
            p_keys = constraint_keys(body["principal"])
            a_keys = constraint_keys(body["action"])
            r_keys = constraint_keys(body["resource"])
            principal_seen.update(p_keys)
            action_seen.update(a_keys)
            resource_seen.update(r_keys)
            for p in p_keys:
                for a in a_keys:
                    for r in r_keys:
                        table.setdefault((p, a, r), []).append(position)
        self._table = {k: tuple(v) for k, v in table.items()}
        self._principal_keys = frozenset(principal_seen)
        self._action_keys = frozenset(action_seen)
        self._resource_keys = frozenset(resource_seen)
        self.size = len(scopes)

    def release(self) -> list[object]:
        """Empty the index and return what it held (to be freed a piece at a time)."""
        pieces: list[object] = [*self._table.items()]
        self._table = {}
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
        p_keys = [k for k in request_keys(*principal) if k in self._principal_keys]
        a_keys = [k for k in request_keys(*action) if k in self._action_keys]
        r_keys = [k for k in request_keys(*resource) if k in self._resource_keys]
        found: set[int] = set()
        table = self._table
        for p in p_keys:
            for a in a_keys:
                for r in r_keys:
                    bucket = table.get((p, a, r))
                    if bucket:
                        found.update(bucket)
        return tuple(sorted(found))
