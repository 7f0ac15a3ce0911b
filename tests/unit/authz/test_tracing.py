"""Tracing: a span per decision continuing the proxy's W3C trace; nothing loaded when off."""

from __future__ import annotations

import subprocess
import sys

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from authz.engine.decider import Decider, Outcome, RequestFacts
from authz.observe.tracing import SPAN_NAME, build_tracer
from meshward.settings import TracingSettings
from tests.support.cli import REPO
from tests.unit.authz.test_decider import CATALOG, FRONTEND, Recorder, engine, make_decider

_ = engine  # the module-scoped engine fixture, reused

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def traced_decider(engine, exporter: InMemorySpanExporter) -> Decider:
    decider = make_decider(engine, Recorder())
    decider.add_observer(build_tracer(TracingSettings(enabled=True), exporter=exporter))
    return decider


def facts(method: str = "GET", **headers: str) -> RequestFacts:
    from authz.authn.peer import PeerFacts

    return RequestFacts(
        "envoy_grpc", method, "/products", host="catalog", headers=headers,
        peer=PeerFacts(principal=FRONTEND), destination=CATALOG,
    )  # fmt: skip


async def test_span_continues_the_proxys_trace(engine, exporter: InMemorySpanExporter) -> None:
    verdict = await traced_decider(engine, exporter).decide(
        facts(traceparent=TRACEPARENT, tracestate="vendor=x")
    )
    [span] = exporter.get_finished_spans()
    assert span.name == SPAN_NAME
    assert span.kind is SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT_ID
    assert span.context.trace_state.get("vendor") == "x"
    attrs = span.attributes
    assert attrs is not None
    assert attrs["meshward.decision_id"] == verdict.decision_id
    assert attrs["meshward.decision"] == "allow"
    assert attrs["meshward.policy_version"] == verdict.decision.policy_version != ""
    assert attrs["meshward.cache_tier"] == "none"
    assert attrs["meshward.principal"] == f'Workload::"{FRONTEND}"'
    assert span.start_time is not None and span.end_time is not None
    assert span.end_time >= span.start_time


async def test_without_traceparent_a_new_trace_starts(engine, exporter) -> None:
    await traced_decider(engine, exporter).decide(facts("DELETE"))
    [span] = exporter.get_finished_spans()
    assert span.parent is None
    assert span.attributes["meshward.decision"] == "deny"


async def test_a_malformed_traceparent_is_ignored_not_fatal(engine, exporter) -> None:
    verdict = await traced_decider(engine, exporter).decide(facts(traceparent="00-zz-bad-01"))
    assert verdict.allowed
    [span] = exporter.get_finished_spans()
    assert span.parent is None


class Broken:
    def evaluate(self, request):
        raise RuntimeError("boom")


async def test_an_error_decision_marks_the_span(exporter) -> None:
    verdict = await traced_decider(Broken(), exporter).decide(facts())
    assert verdict.outcome is Outcome.ERROR
    [span] = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR


def test_tracing_off_adds_nothing_and_on_adds_the_tracer() -> None:
    """Off: meshward's tracing module is never imported and no observer is added.

    (Libraries may import OpenTelemetry on their own when it is installed —
    FastAPI and redis-py do — but with no tracer of meshward's, a decision
    costs nothing more.) On: the PDP's decider gets a DecisionTracer.
    """
    code = (
        "import sys\n"
        "from meshward.settings import Settings\n"
        "from authz.assembly import build_pdp\n"
        "pdp = build_pdp(Settings())\n"
        "print('authz.observe.tracing' in sys.modules)\n"
        "print(sorted(type(o).__name__ for o in pdp.decider.observers))\n"
        "on = build_pdp(Settings(tracing={'enabled': True, 'exporter': 'console'}))\n"
        "print(sorted(type(o).__name__ for o in on.decider.observers))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60,
        check=True,
    )  # fmt: skip
    loaded, off, on = done.stdout.splitlines()[:3]
    assert loaded == "False"
    assert "DecisionTracer" not in off and "PdpMetrics" in off
    assert "DecisionTracer" in on and "PdpMetrics" in on
