"""Tracing on a real ``meshward pdp serve``: a gRPC Check's traceparent continues into a span."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import grpc
from envoy.service.auth.v3 import external_auth_pb2_grpc
from google.rpc import code_pb2

from tests.support.envoy import SHOP, check_request, upstream_headers
from tests.support.pdp import pdp_process

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


def _spans(output: str) -> list[dict[str, Any]]:
    """The JSON spans the console exporter printed (one pretty-printed object each)."""
    decoder = json.JSONDecoder()
    spans, i = [], 0
    while (start := output.find('{\n    "name"', i)) >= 0:
        span, end = decoder.raw_decode(output, start)
        spans.append(span)
        i = end
    return spans


def test_check_with_traceparent_becomes_a_child_span(tmp_path: Path) -> None:
    env = {"MESHWARD_TRACING__ENABLED": "true", "MESHWARD_TRACING__EXPORTER": "console"}
    with pdp_process(tmp_path, env=env) as pdp:
        with grpc.insecure_channel(pdp.grpc_addr) as channel:
            stub = external_auth_pb2_grpc.AuthorizationStub(channel)
            request = check_request(
                principal=f"{SHOP}/frontend",
                certificate=pdp.peer_certificate(f"{SHOP}/frontend"),
                headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
            )
            response = stub.Check(request, timeout=10)
        assert response.status.code == code_pb2.OK
        decision_id = upstream_headers(response)["x-meshward-decision-id"]
    # Stopped: the batch processor flushed at exit.
    spans = [s for s in _spans(pdp.output()) if s["name"] == "meshward.decision"]
    [span] = [s for s in spans if s["attributes"]["meshward.decision_id"] == decision_id]
    assert span["context"]["trace_id"] == f"0x{TRACE_ID}"
    assert span["parent_id"] == f"0x{PARENT_ID}"
    assert span["attributes"]["meshward.decision"] == "allow"
    assert re.fullmatch(
        r"sha256:[0-9a-f]+|[0-9a-f]{40}", span["attributes"]["meshward.policy_version"]
    )
    assert span["resource"]["attributes"]["service.name"] == "meshward-pdp"
