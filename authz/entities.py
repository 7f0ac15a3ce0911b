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
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import cedarpy

from authz.cedar import plain
from authz.model import AccessRequest, EntityUid

__all__ = ["EntityStore", "EntitySummary", "entity_literals"]

# An entity as an explanation shows it: uid, parents, attribute names.
EntitySummary = tuple[EntityUid, tuple[EntityUid, ...], tuple[str, ...]]


def _uid(value: Mapping[str, Any]) -> EntityUid:
    return EntityUid(str(value["type"]), str(value["id"]))


def _references(value: Any) -> Iterator[EntityUid]:
    """Entity references anywhere in a JSON value (Cedar's ``__entity`` escape)."""
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

    def __contains__(self, uid: object) -> bool:
        return uid in self._records

    def for_request(
        self, request: AccessRequest, literals: Iterable[EntityUid] = ()
    ) -> cedarpy.Entities:
        """The entities for ``request``; ``literals`` are the candidate policies' entities."""
        identity = request.identity
        principal = identity.principal
        if not identity.parents and not identity.attributes:
            return self.handle  # the principal adds nothing: the static set as it is
        mine = plain(dict(identity.attributes))
        seeds: set[EntityUid] = {principal, request.action, request.resource}
        seeds.update(identity.parents)
        seeds.update(literals)
        seeds.update(_references(plain(dict(request.context))))
        seeds.update(_references(mine))
        reached = self._reach(seeds)
        records: list[Mapping[str, Any]] = [
            self._records[uid] for uid in reached if uid != principal and uid in self._records
        ]
        static = self._records.get(principal, {})
        parents = {_uid(p): None for p in static.get("parents", ())}
        parents.update((p, None) for p in identity.parents)
        principal_record: dict[str, Any] = {
            "uid": principal.to_cedar(),
            "attrs": {**static.get("attrs", {}), **mine},
            "parents": [p.to_cedar() for p in parents],
        }
        if "tags" in static:
            principal_record["tags"] = static["tags"]
        records.append(principal_record)
        return cedarpy.Entities.from_json_str(json.dumps(records))

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

    def _reach(self, seeds: set[EntityUid]) -> set[EntityUid]:
        reached: set[EntityUid] = set()
        stack = list(seeds)
        while stack:
            uid = stack.pop()
            if uid in reached:
                continue
            reached.add(uid)
            stack.extend(self._links.get(uid, ()))
        return reached
