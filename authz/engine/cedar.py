"""AccessRequest -> the Cedar request and the request's entities (pure).

The Cedar request model (DESIGN.md, ``policies/schema.cedarschema``):

- principal ``Workload::"spiffe://..."``, ``User::"<issuer>|<sub>"`` with
  ``Group`` parents, or ``Anonymous::"anonymous"``;
- action ``Action::"<HTTP method>"``, a member of ``Action::"read"`` or
  ``Action::"write"`` through the bundle's schema;
- resource ``Service::"<destination>"``;
- context ``http {method, host, path, raw_path, query, headers}``, ``peer
  {spiffe_id, trust_domain}``, ``token {claims}``, ``grpc {service, method}``
  (built from wire facts by :mod:`authz.engine.request`).

The static entities (groups, services, the schema's actions) live in the
bundle; a request adds only its principal with its parents and attributes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import cedarpy

from authz.engine.model import AccessRequest, EntityUid, Identity

# cedarpy's own batch entry point, when this cedarpy has it: ``is_authorized``
# wraps it with a request copy, a context re-encoding and result objects that
# cost about a tenth of a sliced decision.
_BATCH = getattr(getattr(cedarpy, "_internal", None), "is_authorized_batch", None)

__all__ = [
    "authorize",
    "entity_record",
    "plain",
    "principal_entities",
    "to_cedar_request",
]


def plain(value: Any) -> Any:
    """A JSON-ready copy of ``value``: mappings to dicts, sequences to lists.

    An :class:`EntityUid` becomes Cedar's entity escape ``{"__entity": ...}``.
    """
    kind = type(value)
    if kind is str or kind is bool or kind is int:
        return value
    if kind is dict or kind is MappingProxyType:
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, EntityUid):
        return {"__entity": value.to_cedar()}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [plain(v) for v in value]
        return sorted(items, key=json.dumps) if isinstance(value, set | frozenset) else items
    return value


_METRICS = ',"metrics":'


def _answer(text: str) -> dict[str, Any]:
    """cedarpy's JSON answer without its trailing timing metrics (a third of it)."""
    # A quote inside a JSON string is escaped, so this key cannot occur in a
    # value; it is the last member of the answer object.
    cut = text.rfind(_METRICS)
    if cut > 0:
        try:
            found = json.loads(text[:cut] + "}")
        except ValueError:
            pass
        else:
            if isinstance(found, dict):
                return found
    answer = json.loads(text)
    return answer if isinstance(answer, dict) else {}


def authorize(
    request: Mapping[str, Any], policies: cedarpy.PolicySet, entities: cedarpy.Entities
) -> tuple[bool, list[str], list[str]]:
    """Cedar's answer: allowed, determining policy ids, errors (may raise on bad input).

    ``request`` holds ``principal``, ``action``, ``resource`` in JSON form and
    ``context`` already encoded as a JSON string.
    """
    inner = getattr(entities, "_inner", None)
    if _BATCH is not None and inner is not None:
        answer = _answer(_BATCH([request], policies, inner, None, False)[0])
        diagnostics = answer.get("diagnostics") or {}
        return (
            answer.get("decision") == "Allow",
            list(diagnostics.get("reason") or ()),
            list(diagnostics.get("errors") or ()),
        )
    result = cedarpy.is_authorized(dict(request), policies, entities)
    return result.allowed, list(result.diagnostics.reasons), list(result.diagnostics.errors)


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
