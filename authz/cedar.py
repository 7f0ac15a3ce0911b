"""AccessRequest -> the Cedar request and the request's entities (pure).

The Cedar request model (DESIGN.md, ``policies/schema.cedarschema``):

- principal ``Workload::"spiffe://..."``, ``User::"<issuer>|<sub>"`` with
  ``Group`` parents, or ``Anonymous::"anonymous"``;
- action ``Action::"<HTTP method>"``, a member of ``Action::"read"`` or
  ``Action::"write"`` through the bundle's schema;
- resource ``Service::"<destination>"``;
- context ``http {method, host, path, raw_path, query, headers}``, ``peer
  {spiffe_id, trust_domain}``, ``token {claims}``, ``grpc {service, method}``
  (built from wire facts by :mod:`authz.request`).

The static entities (groups, services, the schema's actions) live in the
bundle; a request adds only its principal with its parents and attributes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from authz.model import AccessRequest, EntityUid, Identity

__all__ = [
    "entity_record",
    "plain",
    "principal_entities",
    "to_cedar_request",
]


def plain(value: Any) -> Any:
    """A JSON-ready copy of ``value``: mappings to dicts, sequences to lists.

    An :class:`EntityUid` becomes Cedar's entity escape ``{"__entity": ...}``.
    """
    if isinstance(value, EntityUid):
        return {"__entity": value.to_cedar()}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [plain(v) for v in value]
        return sorted(items, key=json.dumps) if isinstance(value, set | frozenset) else items
    return value


def to_cedar_request(request: AccessRequest) -> dict[str, Any]:
    """The request dict ``cedarpy.is_authorized`` takes."""
    return {
        "principal": request.principal.to_cedar(),
        "action": request.action.to_cedar(),
        "resource": request.resource.to_cedar(),
        "context": plain(request.context),
    }


def entity_record(
    uid: EntityUid,
    parents: tuple[EntityUid, ...] | list[EntityUid] = (),
    attributes: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One entity in Cedar's JSON entity format."""
    return {
        "uid": uid.to_cedar(),
        "attrs": plain(attributes or {}),
        "parents": [p.to_cedar() for p in dict.fromkeys(parents)],
    }


def principal_entities(identity: Identity) -> list[dict[str, Any]]:
    """The entities a request contributes: the principal with its parents and attributes."""
    return [entity_record(identity.principal, identity.parents, identity.attributes)]
