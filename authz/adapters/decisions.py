"""``GET /v1/decisions/{id}``: a recent decision, redacted as the decision log is.

Admin only (:class:`~authz.adapters.admin.AdminGate`). ``?explain=true``
adds an explanation (:mod:`authz.explain`) computed now, on the redacted
request, against the active policies (``explained_with`` names their version:
it differs from the decision's ``policy_version`` once new policies are active).
404 when the id is unknown or no longer among the last ``pdp.recent_decisions``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from authz.adapters.admin import AdminGate
from authz.decider import Decider
from authz.decisionlog import decision_entry
from authz.model import AccessRequest
from authz.recent import RecentDecisions

__all__ = ["decisions_router"]

MAX_ID = 128


def decisions_router(
    decider: Decider, recent: RecentDecisions, gate: AdminGate, redact: Iterable[str]
) -> APIRouter:
    router = APIRouter()
    redact = tuple(redact)

    @router.get("/v1/decisions/{decision_id}")
    async def decision(decision_id: str, request: Request) -> Response:
        refused = gate.refuse(request)
        if refused is not None:
            return refused
        record = recent.get(decision_id[:MAX_ID])
        if record is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        entry = decision_entry(record, redact)
        if request.query_params.get("explain", "").lower() in ("1", "true", "yes"):
            entry["explained_with"] = decider.engines.version
            if record.request is None:
                entry["explanation"] = None
            else:
                redacted = _redacted(record.request, entry)
                entry["explanation"] = decider.explain(redacted)
        return JSONResponse(entry)

    return router


def _redacted(request: AccessRequest, entry: Mapping[str, Any]) -> AccessRequest:
    identity = dataclasses.replace(request.identity, attributes=entry["principal_attributes"])
    return dataclasses.replace(request, identity=identity, context=entry["context"] or {})
