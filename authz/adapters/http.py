"""HTTP adapters on FastAPI: forward-auth for Envoy, nginx and Traefik, the decision API.

- ``/ext_authz/{path}`` (any method), Envoy ``http_service``: the original
  method, the path under the prefix, ``Host``;
- ``/auth/nginx``, nginx ``auth_request``: ``X-Original-Method``,
  ``X-Original-URI``, ``Host``;
- ``/auth/traefik``, Traefik ``forwardAuth``: ``X-Forwarded-Method/-Proto/-Host/-Uri``;
- ``POST /v1/authorize``, people and scripts: the ``check`` JSON (one, or
  ``{"requests": [...]}``).

Answers: 200 with ``x-meshward-principal`` and ``x-meshward-decision-id``; 401
with ``WWW-Authenticate: Bearer``; 403 with ``{"error", "decision_id"}``.
``/healthz``, ``/readyz`` (503 until policies are loaded), ``/metrics``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from authz.authn.peer import PeerFacts
from authz.decider import Decider, Outcome, RequestFacts, Verdict
from authz.metrics import PdpMetrics
from authz.model import AccessRequest, AuthMethod, EntityUid, Identity, InvalidEntityUid

__all__ = ["MAX_BATCH", "create_app", "parse_check_json"]

log = logging.getLogger(__name__)

MAX_BATCH = 1000
MAX_BODY = 1024 * 1024
_WWW_AUTHENTICATE = 'Bearer realm="meshward"'


class BadInput(ValueError):
    """The decision API got something that is not a check request."""


def _facts(request: Request, adapter: str, method: str, uri: str, host: str) -> RequestFacts:
    headers = {k.lower(): v for k, v in request.headers.items()}
    path, _, query = uri.partition("?")
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
    )


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
        if envoy and verdict.remove_headers:
            headers["x-envoy-auth-headers-to-remove"] = ",".join(verdict.remove_headers)
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


def parse_check_json(doc: Any) -> AccessRequest:
    """The decision API's request: ``{"principal", "action", "resource", "context"?}``."""
    if not isinstance(doc, dict):
        raise BadInput("expected a JSON object")
    try:
        principal = EntityUid.parse(str(doc.get("principal", "")))
        action = EntityUid.parse(str(doc.get("action", "")))
        resource = EntityUid.parse(str(doc.get("resource", "")))
    except InvalidEntityUid as exc:
        raise BadInput(str(exc)) from exc
    context = doc.get("context", {})
    if not isinstance(context, dict):
        raise BadInput("context must be an object")
    return AccessRequest(Identity(principal, method=AuthMethod.ASSERTED), action, resource, context)


def create_app(decider: Decider, metrics: PdpMetrics) -> FastAPI:
    """The PDP's HTTP application (no I/O until served)."""
    app = FastAPI(
        title="meshward PDP",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    async def ext_authz(request: Request) -> Response:
        try:
            path = "/" + request.path_params.get("path", "")
            uri = path + ("?" + request.url.query if request.url.query else "")
            facts = _facts(
                request, "envoy_http", request.method, uri, request.headers.get("host", "")
            )
        except Exception:
            log.exception("cannot map http_service request")
            return _answer(decider.reject("envoy_http", "internal"))
        return _answer(await decider.decide(facts), envoy=True)

    async def nginx(request: Request) -> Response:
        h = request.headers
        host = h.get("x-original-host") or h.get("x-forwarded-host") or h.get("host", "")
        uri = h.get("x-original-uri")
        method = h.get("x-original-method")
        if uri is None or method is None:
            return _answer(decider.reject("nginx", "missing_original_request"))
        return _answer(await decider.decide(_facts(request, "nginx", method, uri, host)))

    async def traefik(request: Request) -> Response:
        h = request.headers
        uri = h.get("x-forwarded-uri")
        method = h.get("x-forwarded-method")
        if uri is None or method is None:
            return _answer(decider.reject("traefik", "missing_original_request"))
        host = h.get("x-forwarded-host") or h.get("host", "")
        return _answer(await decider.decide(_facts(request, "traefik", method, uri, host)))

    # Forward-auth sees the original method (any, even unknown ones): ASGI
    # endpoints, which starlette routes for every method.
    for path, endpoint in (
        ("/ext_authz", ext_authz),
        ("/ext_authz/{path:path}", ext_authz),
        ("/auth/nginx", nginx),
        ("/auth/traefik", traefik),
    ):
        app.router.routes.append(Route(path, _AnyMethod(endpoint)))

    @app.post("/v1/authorize")
    async def authorize(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"error": "request too large"}, status_code=413)
        try:
            doc = json.loads(body)
            if isinstance(doc, dict) and "requests" in doc:
                items = doc["requests"]
                if not isinstance(items, list) or len(items) > MAX_BATCH:
                    raise BadInput(f"requests must be a list of at most {MAX_BATCH}")
                requests = [parse_check_json(item) for item in items]
                verdicts = [await decider.decide_request(r) for r in requests]
                if any(v.outcome is Outcome.UNAVAILABLE for v in verdicts):
                    return _no_policies_yet()
                return JSONResponse({"decisions": [v.decision.to_json() for v in verdicts]})
            verdict = await decider.decide_request(parse_check_json(doc))
        except (ValueError, BadInput) as exc:
            return JSONResponse({"error": "bad request", "detail": str(exc)[:500]}, 400)
        if verdict.outcome is Outcome.UNAVAILABLE:
            return _no_policies_yet()
        return JSONResponse(
            verdict.decision.to_json(),
            headers={"x-meshward-decision-id": verdict.decision_id},
        )

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
