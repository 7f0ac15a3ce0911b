"""HTTP adapters on FastAPI: forward-auth for Envoy, nginx and Traefik, the decision API.

- ``/ext_authz/{path}`` (any method), Envoy ``http_service``: the original
  method, the raw path under the prefix and the query, ``Host`` (as
  ``context.http.host`` only); the resource is ``pdp.ext_authz_destination``,
  else the ``x-meshward-destination`` header the sidecar sets, never the
  client's ``Host``;
- ``/auth/nginx``, nginx ``auth_request``: ``X-Original-Method``,
  ``X-Original-URI``, ``X-Original-Host`` (else ``X-Forwarded-Host``, ``Host``);
- ``/auth/traefik``, Traefik ``forwardAuth``: ``X-Forwarded-Method/-Proto/-Host/-Uri``;
- ``POST /v1/authorize``, people and scripts: the ``check`` JSON
  (:mod:`authz.engine.requestdoc`; one, or ``{"requests": [...]}``); ``"explain": true``
  adds an ``explanation``.

Every adapter reads headers as :func:`authz.engine.canonical.join_headers` joins them
and hands :mod:`authz.engine.request` the path as received (not decoded).

Answers: 200 with ``x-meshward-principal`` and ``x-meshward-decision-id`` (and
``x-meshward-remove-headers``: ``authorization`` and any ``pdp.remove_headers``,
which the proxy deletes before the upstream; Envoy gets them as
``x-envoy-auth-headers-to-remove``, which it applies itself); 401
with ``WWW-Authenticate: Bearer``; 403 with ``{"error", "decision_id"}``.
``/healthz``, ``/readyz`` (503 until policies are loaded), ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import URLPath
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, NoMatchFound, Route
from starlette.types import Receive, Scope, Send

from authz.authn.peer import PeerFacts
from authz.engine.canonical import MalformedRequest, join_headers, wire_text
from authz.engine.decider import Decider, Outcome, RequestFacts, Verdict
from authz.engine.model import AccessRequest
from authz.engine.request import PathOptions, split_target
from authz.engine.requestdoc import load_document, parse_request, wants_explanation
from authz.errors import RequestError
from authz.observe.metrics import PdpMetrics
from meshward.asgi import BodyTooLarge, read_body

__all__ = ["DESTINATION_HEADER", "MAX_BATCH", "REMOVE_HEADERS", "create_app", "parse_documents"]

log = logging.getLogger(__name__)

MAX_BATCH = 1000
BATCH_YIELD = 16  # decisions of a batch between two turns of the event loop
MAX_BODY = 1024 * 1024
BODY_SECONDS = 10.0  # a decision document arrives whole within this, or is refused (408)
_WWW_AUTHENTICATE = 'Bearer realm="meshward"'
# On an allow: the request headers the proxy must delete before the upstream.
REMOVE_HEADERS = "x-meshward-remove-headers"


DESTINATION_HEADER = "x-meshward-destination"
_EXT_AUTHZ_PREFIX = b"/ext_authz"


def _headers(request: Request) -> dict[str, str]:
    return join_headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw)


def _facts(
    request: Request,
    headers: dict[str, str],
    adapter: str,
    method: str,
    target: str,
    host: str,
    *,
    service: str = "",
) -> RequestFacts:
    path, query = split_target(target)
    return RequestFacts(
        adapter=adapter,
        method=method,
        path=path or "/",
        host=host,
        query=query,
        headers=headers,
        peer=PeerFacts(
            address=request.client.host if request.client else "",
            xfcc=headers.get("x-forwarded-client-cert"),
        ),
        destination=service,
        service=service,
    )


def _header_target(value: str) -> str:
    """A request target sent in a header (raw bytes, which Starlette read as Latin-1)."""
    return wire_text(value.encode("latin-1"))


def _ext_authz_target(scope: Scope) -> str:
    """The original path and query under ``/ext_authz``, as received (not decoded)."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    if not raw.startswith(_EXT_AUTHZ_PREFIX):
        raise MalformedRequest("malformed_path")
    rest = raw[len(_EXT_AUTHZ_PREFIX) :]
    if rest and not rest.startswith(b"/"):
        raise MalformedRequest("malformed_path")  # /ext_authz%2F...
    query: bytes = scope.get("query_string", b"")
    return wire_text(rest or b"/") + ("?" + wire_text(query) if query else "")


def _answer(verdict: Verdict, *, envoy: bool = False) -> Response:
    try:
        return _response(verdict, envoy)
    except (UnicodeError, ValueError):
        # A header value HTTP/1.1 cannot carry (e.g. a non-Latin-1 principal):
        # fail closed rather than answer 500 or mangle the identity.
        log.warning(
            "cannot encode the answer", extra={"fields": {"decision_id": verdict.decision_id}}
        )
        body = {"error": "denied", "decision_id": verdict.decision_id}
        return JSONResponse(body, status_code=403)


def _response(verdict: Verdict, envoy: bool) -> Response:
    if verdict.allowed:
        headers = dict(verdict.upstream_headers())
        if verdict.remove_headers:
            # Envoy applies its own header; other proxies are configured to
            # delete what x-meshward-remove-headers names (docs/pdp.md).
            removed = ",".join(verdict.remove_headers)
            headers[REMOVE_HEADERS] = removed
            if envoy:
                headers["x-envoy-auth-headers-to-remove"] = removed
        return Response(status_code=200, headers=headers)
    headers = {"x-meshward-decision-id": verdict.decision_id}
    if verdict.outcome is Outcome.UNAUTHENTICATED:
        headers["www-authenticate"] = _WWW_AUTHENTICATE
        return JSONResponse(verdict.error_body(), status_code=401, headers=headers)
    if verdict.outcome is Outcome.UNAVAILABLE:
        headers["retry-after"] = "1"
        return JSONResponse(verdict.error_body(), status_code=503, headers=headers)
    return JSONResponse(verdict.error_body(), status_code=403, headers=headers)


def _no_policies_yet() -> Response:
    return JSONResponse({"error": "unavailable"}, status_code=503, headers={"retry-after": "1"})


class _AnyMethod:
    """An ASGI endpoint around ``handler`` that accepts every HTTP method."""

    def __init__(self, handler: Callable[[Request], Awaitable[Response]]) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handler(Request(scope, receive))
        await response(scope, receive, send)


class _PrefixRoute(BaseRoute):
    """Every request whose path is ``prefix`` or under it, any method, any bytes.

    A ``{path:path}`` route does not match a decoded path holding a newline;
    this one hands every such request to the endpoint, which decides on the
    raw path (and denies what it cannot give one meaning).
    """

    def __init__(self, prefix: str, endpoint: Callable[[Request], Awaitable[Response]]) -> None:
        self.prefix = prefix
        self.app = _AnyMethod(endpoint)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path == self.prefix or path.startswith(self.prefix + "/"):
                return Match.FULL, {"endpoint": self.app}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class _ForwardAuth:
    """The forward-auth endpoints: each maps its proxy's request to facts and decides."""

    def __init__(self, decider: Decider, destination: str | None) -> None:
        self.decider = decider
        self.destination = destination

    async def _decide(
        self, adapter: str, request: Request, facts: Callable[[dict[str, str]], RequestFacts]
    ) -> Response:
        """Map with ``facts`` (from the joined headers) and decide; any mapping error denies."""
        try:
            mapped = facts(_headers(request))
        except MalformedRequest as exc:
            return _answer(self.decider.reject(adapter, exc.code))
        except Exception:
            log.exception(
                "cannot map a forward-auth request", extra={"fields": {"adapter": adapter}}
            )
            return _answer(self.decider.reject(adapter, "internal"))
        return _answer(await self.decider.decide(mapped), envoy=adapter == "envoy_http")

    async def ext_authz(self, request: Request) -> Response:
        def facts(h: dict[str, str]) -> RequestFacts:
            service = self.destination or h.get(DESTINATION_HEADER, "")
            if not service:
                raise MalformedRequest("no_destination")
            target = _ext_authz_target(request.scope)
            host = h.get("host", "")
            return _facts(request, h, "envoy_http", request.method, target, host, service=service)

        return await self._decide("envoy_http", request, facts)

    async def nginx(self, request: Request) -> Response:
        def facts(h: dict[str, str]) -> RequestFacts:
            uri, method = h.get("x-original-uri"), h.get("x-original-method")
            if uri is None or method is None:
                raise MalformedRequest("missing_original_request")
            host = h.get("x-original-host") or h.get("x-forwarded-host") or h.get("host", "")
            return _facts(request, h, "nginx", method, _header_target(uri), host)

        return await self._decide("nginx", request, facts)

    async def traefik(self, request: Request) -> Response:
        def facts(h: dict[str, str]) -> RequestFacts:
            uri, method = h.get("x-forwarded-uri"), h.get("x-forwarded-method")
            if uri is None or method is None:
                raise MalformedRequest("missing_original_request")
            host = h.get("x-forwarded-host") or h.get("host", "")
            return _facts(request, h, "traefik", method, _header_target(uri), host)

        return await self._decide("traefik", request, facts)


def parse_documents(
    documents: list[Any], paths: PathOptions
) -> list[AccessRequest | MalformedRequest]:
    """Each decision document as a request, or the reason it is ambiguous (a deny).

    RequestError if any of them is not a request document at all.
    """
    out: list[AccessRequest | MalformedRequest] = []
    for document in documents:
        try:
            out.append(parse_request(document, paths))
        except MalformedRequest as exc:
            out.append(exc)
    return out


def create_app(
    decider: Decider, metrics: PdpMetrics, *, ext_authz_destination: str | None = None
) -> FastAPI:
    """The PDP's HTTP application (no I/O until served).

    ``ext_authz_destination`` (setting ``pdp.ext_authz_destination``) is the
    resource of every ``/ext_authz`` request; unset, the sidecar's
    ``x-meshward-destination`` header names it.
    """
    app = FastAPI(
        title="meshward PDP",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    forward = _ForwardAuth(decider, ext_authz_destination)

    # Forward-auth sees the original method (any, even unknown ones): ASGI
    # endpoints, which starlette routes for every method.
    app.router.routes.append(_PrefixRoute("/ext_authz", forward.ext_authz))
    for path, endpoint in (("/auth/nginx", forward.nginx), ("/auth/traefik", forward.traefik)):
        app.router.routes.append(Route(path, _AnyMethod(endpoint)))

    async def decide(item: AccessRequest | MalformedRequest) -> Verdict:
        if isinstance(item, MalformedRequest):
            return decider.reject("api", item.code)
        return await decider.decide_request(item)

    @app.post("/v1/authorize")
    async def authorize(request: Request) -> Response:
        try:
            body = await read_body(request, MAX_BODY, BODY_SECONDS)
        except BodyTooLarge:
            return JSONResponse({"error": "request too large"}, status_code=413)
        except TimeoutError:
            return JSONResponse({"error": "request body timeout"}, 408, {"connection": "close"})
        try:
            doc = load_document(body)
            if isinstance(doc, dict) and "requests" in doc:
                if set(doc) != {"requests"}:
                    raise RequestError('a batch is {"requests": [...]} and nothing else')
                items = doc["requests"]
                if not isinstance(items, list) or len(items) > MAX_BATCH:
                    raise RequestError(f"requests must be a list of at most {MAX_BATCH}")
                explain = [wants_explanation(i) for i in items]
                parsed = parse_documents(items, decider.paths)
                answers = []
                for index, (item, explained) in enumerate(zip(parsed, explain, strict=True)):
                    if index % BATCH_YIELD == BATCH_YIELD - 1:
                        # A batch shares the event loop with every proxy's check: let them in.
                        await asyncio.sleep(0)
                    answers.append(await answer(item, explained))
                if any(v.outcome is Outcome.UNAVAILABLE for _, v in answers):
                    return _no_policies_yet()
                return JSONResponse({"decisions": [body for body, _ in answers]})
            explain_one = wants_explanation(doc)
            (item,) = parse_documents([doc], decider.paths)
            single, verdict = await answer(item, explain_one)
        except RequestError as exc:
            return JSONResponse({"error": "bad request", "detail": str(exc)[:500]}, 400)
        if verdict.outcome is Outcome.UNAVAILABLE:
            return _no_policies_yet()
        return JSONResponse(single, headers={"x-meshward-decision-id": verdict.decision_id})

    async def answer(
        item: AccessRequest | MalformedRequest, explain: bool
    ) -> tuple[dict[str, Any], Verdict]:
        verdict = await decide(item)
        body = verdict.decision.to_json()
        if explain and isinstance(item, AccessRequest):
            body["explanation"] = decider.explain(item)
        return body, verdict

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        if decider.engines.ready:
            return JSONResponse({"status": "ready", "policy_version": decider.engines.version})
        return JSONResponse({"status": "not ready", "policy_version": ""}, status_code=503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        metrics.policies_loaded.set(1 if decider.engines.ready else 0)
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app
