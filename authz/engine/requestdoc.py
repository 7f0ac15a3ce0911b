"""The decision document of the contract: JSON in, AccessRequest out (pure).

``meshward check`` and ``POST /v1/authorize`` take::

    {"principal": "Workload::\\"spiffe://...\\"", "action": "Action::\\"GET\\"",
     "resource": "Service::\\"...\\"", "context": {...}}

An entity may also be given as ``{"type": ..., "id": ...}``. Optional
``parents`` (entity references) gives the principal's parents, e.g. groups.
Optional ``"explain": true`` asks for an explanation beside the decision
(:func:`wants_explanation`; see :mod:`authz.engine.explain`).
``context.http``, when given, is the request as a client sent it and is mapped
exactly as a proxy's request is (:func:`authz.engine.request.document_context`:
canonical path, ``raw_path``, host without port, joined headers). Anything
else is a :class:`~authz.errors.RequestError` (the caller answers it with
exit code 2 or HTTP 400); an ambiguous request (say a path with ``%2F``) is a
:class:`~authz.engine.canonical.MalformedRequest`, which callers answer with a deny,
as the PDP does on the wire.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from authz.engine.model import AccessRequest, EntityUid, Identity, InvalidEntityUid
from authz.engine.request import DEFAULT_PATHS, PathOptions, document_context
from authz.errors import RequestError
from meshward.jsonbody import JsonTooDeep, loads_bounded

__all__ = [
    "FIELDS",
    "MAX_DOCUMENT_BYTES",
    "MAX_DOCUMENT_DEPTH",
    "entity",
    "load_document",
    "parse_request",
    "parse_request_json",
    "wants_explanation",
]

MAX_DOCUMENT_BYTES = 1 << 20
MAX_DOCUMENT_DEPTH = 64  # JSON nesting of a request document (a batch of contexts included)
FIELDS = frozenset({"principal", "action", "resource", "context", "parents", "explain"})


def entity(value: Any, name: str) -> EntityUid:
    """An entity reference, ``Type::"id"`` or ``{"type", "id"}``; RequestError otherwise."""
    return _entity({name: value}, name)


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


def parse_request(
    document: Any,
    paths: PathOptions = DEFAULT_PATHS,
    *,
    extra_fields: frozenset[str] = frozenset(),
) -> AccessRequest:
    """The AccessRequest a decoded JSON document describes.

    ``extra_fields`` names further top-level fields the caller reads itself
    (they are allowed, not interpreted here).
    """
    if not isinstance(document, Mapping):
        raise RequestError("expected a JSON object")
    unknown = sorted(set(document) - FIELDS - extra_fields)
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
    parents = tuple(entity(p, "parents") for p in raw_parents)
    try:
        context = document_context(context, action, paths)
    except ValueError as exc:
        raise RequestError(str(exc)) from exc
    return AccessRequest(Identity(principal, parents), action, resource, context)


def wants_explanation(document: Any) -> bool:
    """Whether the document asks for an explanation (``"explain": true``)."""
    if not isinstance(document, Mapping):
        return False
    value = document.get("explain", False)
    if not isinstance(value, bool):
        raise RequestError("field 'explain': expected true or false")
    return value


def load_document(text: str | bytes) -> Any:
    """The decoded JSON of a request document (size-limited); RequestError otherwise."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise RequestError(f"request document larger than {MAX_DOCUMENT_BYTES} bytes")
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    try:
        return loads_bounded(data, MAX_DOCUMENT_DEPTH)
    except JsonTooDeep as exc:
        raise RequestError(f"request document nested deeper than {MAX_DOCUMENT_DEPTH}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"not valid JSON: {exc}") from exc


def parse_request_json(text: str | bytes, paths: PathOptions = DEFAULT_PATHS) -> AccessRequest:
    """Parse the JSON text of one request document."""
    return parse_request(load_document(text), paths)
