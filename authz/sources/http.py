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
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from authz.sources.gate import Gate

__all__ = ["MAX_WEBHOOK_BODY", "SIGNATURE_HEADERS", "policies_router", "sign"]

log = logging.getLogger(__name__)

SIGNATURE_HEADERS = ("x-meshward-signature", "x-hub-signature-256")
MAX_WEBHOOK_BODY = 5 * 1024 * 1024


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
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_WEBHOOK_BODY:
                return JSONResponse({"error": "body too large"}, status_code=413)
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
