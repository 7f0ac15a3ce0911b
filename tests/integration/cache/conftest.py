"""Shared pieces for the decision-cache tests: a fresh-evaluation oracle."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import cedarpy

from authz.cache.keys import KeySpace
from authz.engine.model import AccessRequest, Decision, Effect


class Oracle:
    """Evaluates a request afresh with cedarpy over the whole policy set."""

    def __init__(self, version: str, policies: str) -> None:
        self.version = version
        self.policy_set = cedarpy.PolicySet.from_str(policies)
        doc = json.loads(cedarpy.policies_to_json_str(policies))
        self.keyspace = KeySpace(version, doc["staticPolicies"])
        self.calls = 0

    def evaluate(self, request: AccessRequest) -> Decision:
        self.calls += 1
        ident = request.identity
        entities: list[dict[str, Any]] = [
            {
                "uid": ident.principal.to_cedar(),
                "attrs": dict(ident.attributes),
                "parents": [p.to_cedar() for p in ident.parents],
            }
        ]
        entities += [{"uid": p.to_cedar(), "attrs": {}, "parents": []} for p in ident.parents]
        result = cedarpy.is_authorized(
            {
                "principal": ident.principal.to_cedar(),
                "action": request.action.to_cedar(),
                "resource": request.resource.to_cedar(),
                "context": _plain(request.context),
            },
            self.policy_set,
            entities,
        )
        effect = Effect.ALLOW if result.decision == cedarpy.Decision.Allow else Effect.DENY
        reasons = tuple(sorted(result.diagnostics.reasons))
        errors = tuple(sorted(str(e) for e in result.diagnostics.errors))
        return Decision(effect, reasons, errors, self.version)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
