"""``GET /v1/policies`` and ``POST /v1/policies/refresh`` as a FastAPI router.

The PDP's HTTP app includes the router made by :func:`policies_router`.

The refresh webhook is signed the way GitHub signs its webhooks: the header
``X-Meshward-Signature`` (or GitHub's own ``X-Hub-Signature-256``) holds
``sha256=`` and the hex HMAC-SHA256 of the raw request body under the shared
secret. A missing or wrong signature gets 401 and triggers nothing; the
comparison is constant-time. With no secret configured the endpoint needs no
signature: all it can do is make the PDP look at its configured source
sooner, never change what that source is.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from authz.engine.bundle import PolicyBundle
from authz.lifecycle.policytest import run_tests
from authz.sources.gate import Gate
from meshward.asgi import BodyTooLarge, read_body

__all__ = [
    "MAX_WEBHOOK_BODY",
    "SIGNATURE_HEADERS",
    "active_policies_router",
    "bundle_document",
    "policies_router",
    "scope_text",
    "sign",
]

AdminCheck = Callable[[Request], Response | None]

log = logging.getLogger(__name__)

SIGNATURE_HEADERS = ("x-meshward-signature", "x-hub-signature-256")
MAX_WEBHOOK_BODY = 5 * 1024 * 1024
WEBHOOK_SECONDS = 10.0


def sign(secret: bytes, body: bytes) -> str:
    """The signature header value for ``body``: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def _signature_ok(secret: bytes, body: bytes, headers: Any) -> bool:
    expected = sign(secret, body).encode()
    for name in SIGNATURE_HEADERS:
        given = headers.get(name)
        if given is not None:
            return hmac.compare_digest(expected, given.strip().encode("utf-8", "replace"))
    return False


def _entity_text(ref: Mapping[str, Any]) -> str:
    entity = ref.get("entity")
    if isinstance(entity, Mapping):
        return f"{entity.get('type')}::{json.dumps(entity.get('id'))}"
    entities = ref.get("entities")
    if isinstance(entities, list):
        return "[" + ", ".join(_entity_text({"entity": e}) for e in entities) + "]"
    return "?"


def _scope_part(name: str, part: Mapping[str, Any]) -> str:
    op = part.get("op", "All")
    if op == "All":
        return name
    if op == "is":
        text = f"{name} is {part.get('entity_type')}"
        inner = part.get("in")
        return text + (f" in {_entity_text(inner)}" if isinstance(inner, Mapping) else "")
    return f"{name} {op} {_entity_text(part)}"


def scope_text(policy_json: Mapping[str, Any]) -> str:
    """A policy's scope as one line (``principal == User::"a", action in [...], resource``)."""
    return ", ".join(
        _scope_part(name, policy_json.get(name) or {})
        for name in ("principal", "action", "resource")
    )


def bundle_document(bundle: PolicyBundle) -> dict[str, Any]:
    """The active bundle for the admin API: policies, schema, entities, and test coverage.

    ``coverage`` maps a policy id to the test cases (``file: name``) whose
    decision it determined.
    """
    coverage: dict[str, list[str]] = {}
    for result in run_tests(bundle).results:
        for policy_id in result.decision.reasons:
            coverage.setdefault(policy_id, []).append(f"{result.file}: {result.case.name}")
    return {
        "version": bundle.version,
        "schema": bundle.schema_text,
        "entities": json.dumps(list(bundle.entity_records)),
        "policies": [
            {
                "id": p.id,
                "effect": p.effect,
                "file": p.file,
                "line": p.line,
                "column": p.column,
                "scope": scope_text(p.json),
                "text": p.text,
            }
            for p in bundle.policies
        ],
        "coverage": coverage,
    }


def active_policies_router(gate: Gate[Any], admin: AdminCheck) -> APIRouter:
    """``GET /v1/policies/active``: the active bundle's content, for admins only.

    ``admin`` refuses a caller by returning a response (``AdminGate.refuse``).
    The document is built once per active version.
    """
    router = APIRouter()
    described: dict[str, dict[str, Any]] = {}

    @router.get("/v1/policies/active")
    async def policies_active(request: Request) -> Response:
        refused = admin(request)
        if refused is not None:
            return refused
        active = gate.active
        if active is None:
            return JSONResponse({"error": "no policy version is active"}, status_code=503)
        if active.version not in described:
            described.clear()  # one version at a time
            described[active.version] = bundle_document(active.engine.bundle)
        return JSONResponse(described[active.version])

    return router


def policies_router(
    gate: Gate[Any], *, webhook_secret: bytes | None, shadow: Gate[Any] | None = None
) -> APIRouter:
    """The policy endpoints for ``gate`` (and, if given, the shadow candidate's gate)."""
    router = APIRouter()

    @router.get("/v1/policies")
    async def policies_status() -> JSONResponse:
        body = gate.status().to_json()
        body["shadow"] = shadow.status().to_json() if shadow is not None else None
        return JSONResponse(body)

    @router.post("/v1/policies/refresh")
    async def policies_refresh(request: Request) -> JSONResponse:
        try:
            body = await read_body(request, MAX_WEBHOOK_BODY, WEBHOOK_SECONDS)
        except BodyTooLarge:
            return JSONResponse({"error": "body too large"}, status_code=413)
        except TimeoutError:
            return JSONResponse({"error": "body timeout"}, 408, {"connection": "close"})
        if webhook_secret is not None and not _signature_ok(webhook_secret, body, request.headers):
            log.warning("policy refresh webhook: bad or missing signature")
            return JSONResponse(
                {"error": "invalid signature"},
                status_code=401,
                headers={"WWW-Authenticate": 'HMAC-SHA256 header="X-Meshward-Signature"'},
            )
        # An explicit refresh also checks again a version whose check failed
        # (time or memory limit); polls and announcements never do.
        gate.trigger(retry=True)
        if shadow is not None:
            shadow.trigger(retry=True)
        return JSONResponse({"status": "refresh scheduled"}, status_code=202)

    return router
