"""The entities Cedar sees for one request, without copying the whole store.

The bundle's static entities (entities.json plus the schema's actions) are
parsed once into a ``cedarpy.Entities`` handle. A request whose principal
brings nothing new (no parents, no attributes) uses that handle as it is.
Otherwise adding the principal to the handle would clone the whole store on
every request (milliseconds for a few thousand entities), so
the request gets a small entity set instead: every entity evaluation can
reach — the principal, action and resource, the entity literals of the
candidate policies, entity references in the context and the principal's
attributes, and, transitively, their parents and the entities their
attributes and tags refer to. Evaluation cannot reach any other entity, so
the decision is the same as with the whole store (property-tested).

The static part of that set (what the candidate policies' literals, the
action and the resource reach) is parsed once per (candidates, action,
resource) and kept; a request adds only its principal and what the principal
alone reaches (``Entities.with_added_json_str`` on that small handle).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import cedarpy

from authz.engine.cedar import plain
from authz.engine.model import AccessRequest, EntityUid

__all__ = ["EntityStore", "EntitySummary", "entity_literals"]

# An entity as an explanation shows it: uid, parents, attribute names.
EntitySummary = tuple[EntityUid, tuple[EntityUid, ...], tuple[str, ...]]


def _uid(value: Mapping[str, Any]) -> EntityUid:
    return EntityUid(str(value["type"]), str(value["id"]))


def _references(value: Any) -> Iterator[EntityUid]:
    """Entity references anywhere in a JSON value (Cedar's ``__entity`` escape)."""
    kind = type(value)
    if kind is str or kind is int or kind is bool:
        return
    if isinstance(value, Mapping):
        inner = value.get("__entity")
        if isinstance(inner, Mapping) and "type" in inner and "id" in inner:
            yield _uid(inner)
            return
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _references(item)


def entity_literals(policy_json: Mapping[str, Any]) -> frozenset[EntityUid]:
    """Every entity a policy names: scope entities and literals in its conditions."""
    found: set[EntityUid] = set(_references(policy_json.get("conditions", [])))
    for part in ("principal", "action", "resource"):
        constraint = policy_json.get(part) or {}
        entity = constraint.get("entity")
        if isinstance(entity, Mapping):
            found.add(_uid(entity))
        for item in constraint.get("entities") or ():
            found.add(_uid(item))
        inside = constraint.get("in")
        if isinstance(inside, Mapping) and isinstance(inside.get("entity"), Mapping):
            found.add(_uid(inside["entity"]))
    return frozenset(found)


_MAX_SLICE_HANDLES = 4096


class EntityStore:
    """Static entities plus, per request, the principal the request describes."""

    def __init__(self, handle: cedarpy.Entities, records: Iterable[Mapping[str, Any]]) -> None:
        self.handle = handle
        self._records: dict[EntityUid, Mapping[str, Any]] = {}
        self._links: dict[EntityUid, tuple[EntityUid, ...]] = {}
        for record in records:
            uid = _uid(record["uid"])
            self._records[uid] = record
            links = {_uid(p) for p in record.get("parents", ())}
            links.update(_references(record.get("attrs", {})))
            links.update(_references(record.get("tags", {})))
            self._links[uid] = tuple(links)
        # (literals, action, resource) -> the static entities they reach, parsed once.
        self._slices: dict[
            tuple[frozenset[EntityUid], EntityUid, EntityUid],
            tuple[frozenset[EntityUid], cedarpy.Entities],
        ] = {}
        # ... and with a principal added, for its next requests.
        self._principals: dict[tuple[Any, ...], cedarpy.Entities] = {}

    def __contains__(self, uid: object) -> bool:
        return uid in self._records

    def for_request(
        self,
        request: AccessRequest,
        literals: Iterable[EntityUid] = frozenset(),
        context: Mapping[str, Any] | None = None,
    ) -> cedarpy.Entities:
        """The entities for ``request``; ``literals`` are the candidate policies' entities.

        ``context`` is the context Cedar will see, in plain JSON form (default:
        the request's own).
        """
        identity = request.identity
        principal = identity.principal
        if not identity.parents and not identity.attributes:
            return self.handle  # the principal adds nothing: the static set as it is
        if not isinstance(literals, frozenset):
            literals = frozenset(literals)
        mine = identity.attributes
        referenced = frozenset(
            _references(plain(dict(request.context)) if context is None else context)
        )
        # Everything the answer depends on: a principal's next requests reuse it.
        attributes: object
        if all(type(value) is str for value in mine.values()):
            attributes = tuple(sorted(mine.items()))  # the usual case: plain strings
        else:
            mine = plain(dict(mine))
            try:
                attributes = json.dumps(mine, sort_keys=True)
            except (TypeError, ValueError):
                attributes = None  # not encodable as a key: built afresh every time
        key = (
            literals,
            request.action,
            request.resource,
            principal,
            identity.parents,
            attributes,
            referenced,
        )
        found = self._principals.get(key) if attributes is not None else None
        if found is None:
            found = self._build(request, literals, plain(dict(mine)), referenced)
            if attributes is not None:
                if len(self._principals) >= _MAX_SLICE_HANDLES:
                    self._principals.clear()
                self._principals[key] = found
        return found

    def _build(
        self,
        request: AccessRequest,
        literals: frozenset[EntityUid],
        mine: Mapping[str, Any],
        referenced: frozenset[EntityUid],
    ) -> cedarpy.Entities:
        identity = request.identity
        principal = identity.principal
        seeds: set[EntityUid] = {principal, *identity.parents, *referenced}
        seeds.update(_references(mine))
        if principal not in self._records:
            # The usual case (a user from a token): the static part of the slice is
            # parsed once and shared; only the principal and what it alone reaches
            # are added.
            reached, handle = self._slice(literals, request.action, request.resource)
            if principal not in reached:
                extra = self._reach(seeds) - reached
                records = [self._records[uid] for uid in extra if uid in self._records]
                records.append(self._principal_record(principal, identity.parents, mine))
                return handle.with_added_json_str(json.dumps(records))
        seeds.update(literals)
        seeds.update((request.action, request.resource))
        records = [
            self._records[uid] for uid in self._reach(seeds) if uid != principal and uid in self
        ]
        records.append(self._principal_record(principal, identity.parents, mine))
        return cedarpy.Entities.from_json_str(json.dumps(records))

    def _principal_record(
        self, principal: EntityUid, given: tuple[EntityUid, ...], attributes: Mapping[str, Any]
    ) -> dict[str, Any]:
        static = self._records.get(principal, {})
        parents = {_uid(p): None for p in static.get("parents", ())}
        parents.update((p, None) for p in given)
        record: dict[str, Any] = {
            "uid": principal.to_cedar(),
            "attrs": {**static.get("attrs", {}), **attributes},
            "parents": [p.to_cedar() for p in parents],
        }
        if "tags" in static:
            record["tags"] = static["tags"]
        return record

    def _slice(
        self, literals: frozenset[EntityUid], action: EntityUid, resource: EntityUid
    ) -> tuple[frozenset[EntityUid], cedarpy.Entities]:
        key = (literals, action, resource)
        found = self._slices.get(key)
        if found is None:
            reached = frozenset(self._reach({*literals, action, resource}))
            text = json.dumps([self._records[uid] for uid in reached if uid in self._records])
            found = (reached, cedarpy.Entities.from_json_str(text))
            if len(self._slices) >= _MAX_SLICE_HANDLES:
                self._slices.clear()
            self._slices[key] = found
        return found

    def summary(
        self, request: AccessRequest, literals: Iterable[EntityUid] = ()
    ) -> list[EntitySummary]:
        """The entities ``request`` can reach (as :meth:`for_request` gathers them), sorted:
        each uid with its parents and attribute names (never attribute values)."""
        identity = request.identity
        seeds: set[EntityUid] = {identity.principal, request.action, request.resource}
        seeds.update(identity.parents)
        seeds.update(literals)
        seeds.update(_references(plain(dict(request.context))))
        out: list[EntitySummary] = []
        for uid in sorted(self._reach(seeds)):
            record = self._records.get(uid, {})
            parents = [_uid(p) for p in record.get("parents", ())]
            attributes = set(record.get("attrs", {}))
            if uid == identity.principal:
                parents.extend(identity.parents)
                attributes.update(identity.attributes)
            elif uid not in self._records:
                continue  # neither static nor the principal: Cedar knows nothing of it
            out.append((uid, tuple(dict.fromkeys(parents)), tuple(sorted(attributes))))
        return out

    def _reach(self, seeds: Iterable[EntityUid]) -> set[EntityUid]:
        reached: set[EntityUid] = set()
        stack = list(seeds)
        while stack:
            uid = stack.pop()
            if uid in reached:
                continue
            reached.add(uid)
            stack.extend(self._links.get(uid, ()))
        return reached
