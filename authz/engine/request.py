"""Wire facts -> AccessRequest: the one request mapping (pure).

Every way into a decision goes through here, so a policy test, ``meshward
check``, the decision API, replay and live traffic decide the same request the
same way:

- proxy adapters (gRPC ``Check``, ``/ext_authz``, ``/auth/nginx``,
  ``/auth/traefik``) fill :class:`RequestFacts` and the decider calls
  :func:`build_request` once the caller is authenticated;
- policy test cases with a raw ``request`` build :class:`RequestFacts` too;
- decision documents (``check``, ``POST /v1/authorize``, :mod:`authz.engine.requestdoc`)
  give the context directly; :func:`document_context` maps its ``http`` part
  with the same functions.

``context.http`` is ``{method, host, path, raw_path, query, headers}``:
``path`` is the canonical path and ``raw_path`` the path as received
(:mod:`authz.engine.canonical`); ``host`` is lower-case without port; ``headers`` has
one value per lower-case name (repeated fields comma-joined) without
:data:`HIDDEN_HEADERS` and HTTP/2 pseudo-headers (``:path``, ...). A request
that cannot be given one meaning raises
:class:`~authz.engine.canonical.MalformedRequest` (a deny).

The resource is ``Service::"<destination>"``: the destination's SPIFFE ID
(Envoy's ``destination.principal``), else the configured or sidecar-pinned
service name, else the canonical host.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

from authz.authn.authenticator import Authenticated
from authz.authn.peer import PeerFacts, parse_spiffe_id
from authz.engine.canonical import (
    MalformedRequest,
    canonical_host,
    canonical_path,
    join_headers,
)
from authz.engine.model import AccessRequest, EntityUid
from meshward.spiffe import InvalidSpiffeId

__all__ = [
    "DEFAULT_PATHS",
    "HIDDEN_HEADERS",
    "HTTP_FIELDS",
    "MAX_METHOD_LENGTH",
    "MalformedRequest",
    "PathOptions",
    "RequestFacts",
    "build_request",
    "document_context",
    "http_context",
    "split_target",
]

# Headers policies never see: credentials (represented as context.token /
# context.peer instead) and our own headers, which a caller could forge.
HIDDEN_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-forwarded-client-cert",
        "x-meshward-principal",
        "x-meshward-decision-id",
        "x-meshward-destination",
    }
)
_OWN_PREFIX = "x-meshward-"  # every header of ours is hidden too, whatever its name
MAX_METHOD_LENGTH = 32
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
_NO_PEER = PeerFacts()
# The fields of context.http a decision document may give.
HTTP_FIELDS = frozenset({"method", "host", "path", "raw_path", "query", "headers"})


@dataclass(frozen=True, slots=True)
class PathOptions:
    """How paths are canonicalized (settings ``pdp.allow_encoded_slash``,
    ``pdp.case_insensitive_paths``)."""

    allow_encoded_slash: bool = False
    case_insensitive: bool = False


DEFAULT_PATHS = PathOptions()


class RequestFacts(NamedTuple):
    """What a proxy tells us about one request, before any interpretation.

    ``path`` is the path as received, query split off, not decoded;
    ``headers`` has lower-case names, one value each (see
    :func:`authz.engine.canonical.join_headers`). Immutable (a named tuple:
    one is made per request, and a tuple is made in a fraction of the time a
    frozen dataclass takes).
    """

    adapter: str
    method: str
    path: str
    host: str = ""
    query: str = ""
    headers: Mapping[str, str] = _NO_HEADERS
    peer: PeerFacts = _NO_PEER
    destination: str = ""  # the destination's SPIFFE ID (Envoy destination.principal)
    service: str = ""  # a pinned service name (context_extensions, setting, sidecar header)


def split_target(target: str, query: str = "") -> tuple[str, str]:
    """``(path, query)`` of a request target, split at the first ``?`` before any decoding.

    ``query`` is used when the target has none (Envoy may send it apart).
    """
    path, sep, in_target = target.partition("?")
    return path, in_target if sep else query


@functools.lru_cache(maxsize=256)  # a few methods recur; a bad one is never cached
def _method(method: str) -> str:
    upper = method.upper()
    if not upper or len(upper) > MAX_METHOD_LENGTH or not _TOKEN_CHARS.issuperset(upper):
        raise MalformedRequest("bad_method")
    return upper


@functools.lru_cache(maxsize=256)
def _action(method: str) -> EntityUid:
    return EntityUid("Action", method)


def http_context(
    method: str,
    host: str,
    raw_path: str,
    query: str,
    headers: Mapping[str, str],
    paths: PathOptions = DEFAULT_PATHS,
) -> dict[str, Any]:
    """``context.http`` from wire facts (``headers`` already joined, lower-case)."""
    return {
        "method": _method(method),
        "host": canonical_host(host),
        "path": canonical_path(
            raw_path,
            allow_encoded_slash=paths.allow_encoded_slash,
            lowercase=paths.case_insensitive,
        ),
        "raw_path": raw_path or "/",
        "query": query,
        "headers": {
            k: v
            for k, v in headers.items()
            if k not in HIDDEN_HEADERS and not k.startswith(_OWN_PREFIX) and k[:1] != ":"
        },
    }


@functools.lru_cache(maxsize=4096)  # the same few destinations recur constantly
def _destination(principal: str) -> EntityUid | None:
    try:
        return EntityUid("Service", str(parse_spiffe_id(principal)))
    except InvalidSpiffeId:
        return None


def _resource(facts: RequestFacts, host: str) -> EntityUid:
    if facts.destination:
        found = _destination(facts.destination)
        if found is not None:
            return found
    if facts.service:
        return EntityUid("Service", facts.service)
    return EntityUid("Service", host)


def _grpc_context(path: str, headers: Mapping[str, str]) -> dict[str, str] | None:
    if not headers.get("content-type", "").startswith("application/grpc"):
        return None
    parts = path.split("/")
    if len(parts) != 3 or parts[0] or not parts[1] or not parts[2]:
        return None
    return {"service": parts[1], "method": parts[2]}


def build_request(
    facts: RequestFacts, who: Authenticated, paths: PathOptions = DEFAULT_PATHS
) -> AccessRequest:
    """The Cedar request for ``facts`` made by ``who``; MalformedRequest if ambiguous."""
    http = http_context(facts.method, facts.host, facts.path, facts.query, facts.headers, paths)
    context: dict[str, Any] = {"http": http}
    if who.peer is not None:
        context["peer"] = who.peer.context()
    if who.claims is not None:
        context["token"] = {"claims": dict(who.claims)}
    grpc = _grpc_context(http["path"], facts.headers)
    if grpc is not None:
        context["grpc"] = grpc
    resource = _resource(facts, http["host"])
    return AccessRequest(who.identity, _action(http["method"]), resource, context)


def _document_headers(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ValueError("context.http.headers: expected an object")
    items: list[tuple[str, str]] = []
    for name, entry in value.items():
        values = entry if isinstance(entry, list) else [entry]
        for one in values:
            if not isinstance(one, str):
                raise ValueError(f"context.http.headers.{name}: expected a string or strings")
            items.append((str(name), one))
    return join_headers(items)


def document_context(
    context: Mapping[str, Any], action: EntityUid, paths: PathOptions = DEFAULT_PATHS
) -> dict[str, Any]:
    """A decision document's context with its ``http`` part mapped like a proxy's request.

    ``http.path`` (or ``http.raw_path`` when given) is the path as a client
    sent it; the method defaults to the action's id. Raises ``ValueError``
    for a badly typed field and :class:`MalformedRequest` for an ambiguous
    request (a deny, as on the wire).
    """
    out = dict(context)
    http = context.get("http")
    if http is None:
        return out
    if not isinstance(http, Mapping):
        raise ValueError("context.http: expected an object")
    unknown = sorted(set(http) - HTTP_FIELDS)
    if unknown:
        raise ValueError(f"context.http: unknown fields: {', '.join(map(str, unknown))}")
    strings = {}
    for name in ("method", "host", "path", "raw_path", "query"):
        value = http.get(name, "")
        if not isinstance(value, str):
            raise ValueError(f"context.http.{name}: expected a string")
        strings[name] = value
    raw_path, query = split_target(strings["raw_path"] or strings["path"], strings["query"])
    out["http"] = http_context(
        strings["method"] or action.id,
        strings["host"],
        raw_path,
        query,
        _document_headers(http.get("headers", {})),
        paths,
    )
    return out
