"""The decision document of the contract: JSON in, AccessRequest out (pure).

``meshward check`` and ``POST /v1/authorize`` take::

    {"principal": "Workload::\\"spiffe://...\\"", "action": "Action::\\"GET\\"",
     "resource": "Service::\\"...\\"", "context": {...}}

An entity may also be given as ``{"type": ..., "id": ...}``. Optional
``parents`` (entity references) gives the principal's parents, e.g. groups.
Optional ``"explain": true`` asks for an explanation beside the decision
(:func:`wants_explanation`; see :mod:`authz.explain`).
Anything else is a :class:`~authz.errors.RequestError` (fail closed: the
caller answers it with a deny or exit code 2).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from authz.errors import RequestError
from authz.model import AccessRequest, EntityUid, Identity, InvalidEntityUid

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "parse_request",
    "parse_request_json",
    "read_document",
    "wants_explanation",
]

MAX_DOCUMENT_BYTES = 1 << 20
_FIELDS = frozenset({"principal", "action", "resource", "context", "parents", "explain"})


def _entity(document: Mapping[str, Any], name: str) -> EntityUid:
    if name not in document:
        raise RequestError(f"missing field {name!r}")
    value = document[name]
    if isinstance(value, Mapping):
        kind, ident = value.get("type"), value.get("id")
        if not isinstance(kind, str) or not isinstance(ident, str) or not kind:
            raise RequestError(f"field {name!r}: expected {{'type': str, 'id': str}}")
        return EntityUid(kind, ident)
    try:
        return EntityUid.parse(value)
    except InvalidEntityUid as exc:
        raise RequestError(f"field {name!r}: {exc}") from exc


def parse_request(document: Any) -> AccessRequest:
    """The AccessRequest a decoded JSON document describes."""
    if not isinstance(document, Mapping):
        raise RequestError("expected a JSON object")
    unknown = sorted(set(document) - _FIELDS)
    if unknown:
        raise RequestError(f"unknown fields: {', '.join(unknown)}")
    principal = _entity(document, "principal")
    action = _entity(document, "action")
    resource = _entity(document, "resource")
    context = document.get("context", {})
    if context is None:
        context = {}
    if not isinstance(context, Mapping):
        raise RequestError("field 'context': expected a JSON object")
    raw_parents = document.get("parents", [])
    if not isinstance(raw_parents, list):
        raise RequestError("field 'parents': expected a list of entity references")
    parents = tuple(_entity({"parent": p}, "parent") for p in raw_parents)
    return AccessRequest(Identity(principal, parents), action, resource, context)


def wants_explanation(document: Any) -> bool:
    """Whether the document asks for an explanation (``"explain": true``)."""
    if not isinstance(document, Mapping):
        return False
    value = document.get("explain", False)
    if not isinstance(value, bool):
        raise RequestError("field 'explain': expected true or false")
    return value


def read_document(text: str | bytes) -> Any:
    """The decoded JSON of one request document (size-limited)."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise RequestError(f"request document larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"not valid JSON: {exc}") from exc


def parse_request_json(text: str | bytes) -> AccessRequest:
    """Parse the JSON text of one request document."""
    return parse_request(read_document(text))
