"""``GET /v1/decisions/{id}``: a recent decision, redacted as the decision log is.

``GET /v1/decisions?principal=&resource=&decision=&limit=``: the recent
decisions, newest first, filtered (principal and resource by substring,
decision exactly), at most ``limit`` (default 100, at most 1,000).

Admin only (:class:`~authz.adapters.admin.AdminGate`). ``?explain=true``
adds an explanation (:mod:`authz.engine.explain`) computed now, on the redacted
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
from authz.engine.decider import Decider, DecisionRecord
from authz.engine.model import AccessRequest
from authz.observe.decisionlog import DEFAULT_LOGGED_HEADERS, decision_entry
from authz.observe.recent import RecentDecisions

__all__ = ["decisions_router"]

MAX_ID = 128
MAX_LIST = 1000


def decisions_router(
    decider: Decider,
    recent: RecentDecisions,
    gate: AdminGate,
    redact: Iterable[str],
    *,
    headers: Iterable[str] = DEFAULT_LOGGED_HEADERS,
    query_values: bool = False,
) -> APIRouter:
    """The admin decision endpoints; entries are redacted exactly as the decision log's."""
    router = APIRouter()
    redact = tuple(redact)
    logged_headers = tuple(headers)

    def entry_of(record: DecisionRecord) -> dict[str, Any]:
        return decision_entry(record, redact, headers=logged_headers, query_values=query_values)

    @router.get("/v1/decisions")
    async def decisions(request: Request) -> Response:
        refused = gate.refuse(request)
        if refused is not None:
            return refused
        query = request.query_params
        raw_limit = query.get("limit", "100")
        if not (raw_limit.isascii() and raw_limit.isdigit()):
            return JSONResponse({"error": "limit must be a number"}, status_code=400)
        limit = MAX_LIST if len(raw_limit) > 6 else min(int(raw_limit), MAX_LIST)
        principal = query.get("principal", "")
        resource = query.get("resource", "")
        decision = query.get("decision", "")
        out: list[dict[str, Any]] = []
        for record in recent.newest():
            if len(out) >= limit:
                break
            if principal and principal not in record.principal:
                continue
            if resource and resource not in record.resource:
                continue
            if decision and decision != record.decision:
                continue
            out.append(entry_of(record))
        return JSONResponse({"decisions": out})

    @router.get("/v1/decisions/{decision_id}")
    async def decision(decision_id: str, request: Request) -> Response:
        refused = gate.refuse(request)
        if refused is not None:
            return refused
        record = recent.get(decision_id[:MAX_ID])
        if record is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        entry = entry_of(record)
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
