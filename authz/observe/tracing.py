"""OpenTelemetry: one span per decision, continuing the proxy's W3C trace.

This module imports OpenTelemetry at the top on purpose: it is imported only
when ``tracing.enabled`` is set (see :func:`authz.assembly.build_pdp`), so a PDP
with tracing off never loads the packages and pays nothing.

The span is recorded after the decision, from the :class:`DecisionRecord`
the decider hands its observers: its parent comes from the ``traceparent``
(and ``tracestate``) headers the proxy forwarded, its start and end from the
record's time and latency, its attributes from the decision.

Errors::

    TracingError  (tracing is on but cannot be set up: the extra is missing)
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from authz.engine.decider import TRACE_HEADERS, DecisionRecord
from authz.errors import TracingError
from meshward.settings import TracingSettings

__all__ = ["SPAN_NAME", "TRACE_HEADERS", "DecisionTracer", "TracingError", "build_tracer"]

SPAN_NAME = "meshward.decision"
_propagator = TraceContextTextMapPropagator()


class DecisionTracer:
    """A decision observer that records each decision as a span."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def observe(self, record: DecisionRecord) -> None:
        carrier: Mapping[str, str] = dict(record.trace_context)
        parent = _propagator.extract(carrier=carrier)
        end_ns = int(record.time.timestamp() * 1_000_000_000)
        start_ns = end_ns - int(record.latency_seconds * 1_000_000_000)
        span = self._tracer.start_span(
            SPAN_NAME,
            context=parent,
            kind=SpanKind.SERVER,
            start_time=start_ns,
            attributes=_attributes(record),
        )
        if record.outcome == "error":
            span.set_status(Status(StatusCode.ERROR, "decision error (denied)"))
        span.end(end_time=end_ns)


def _attributes(record: DecisionRecord) -> dict[str, Any]:
    return {
        "meshward.decision_id": record.decision_id,
        "meshward.decision": record.decision,
        "meshward.outcome": record.outcome,
        "meshward.policy_version": record.version,
        "meshward.cache_tier": record.cache_tier,
        "meshward.adapter": record.adapter,
        "meshward.principal": record.principal,
        "meshward.action": record.action,
        "meshward.resource": record.resource,
        "meshward.reasons": list(record.reasons),
        "http.request.method": record.method,
        "url.path": record.path,
    }


def build_tracer(settings: TracingSettings, exporter: Any = None) -> DecisionTracer:
    """A :class:`DecisionTracer` exporting through ``exporter`` or the configured one.

    ``exporter`` (a span exporter) is for tests; spans then go through a simple
    synchronous processor so they are visible at once. Otherwise a batch
    processor sends them in the background.
    """
    try:
        sdk_trace = importlib.import_module("opentelemetry.sdk.trace")
        sdk_export = importlib.import_module("opentelemetry.sdk.trace.export")
        sdk_resources = importlib.import_module("opentelemetry.sdk.resources")
    except ImportError as exc:
        raise TracingError("tracing needs the otel extra: pip install 'meshward[otel]'") from exc
    resource = sdk_resources.Resource.create({"service.name": settings.service_name})
    provider = sdk_trace.TracerProvider(resource=resource)
    if exporter is not None:
        provider.add_span_processor(sdk_export.SimpleSpanProcessor(exporter))
    else:
        provider.add_span_processor(sdk_export.BatchSpanProcessor(_exporter(settings)))
    return DecisionTracer(provider.get_tracer("meshward.authz"))


def _exporter(settings: TracingSettings) -> Any:
    if settings.exporter == "console":
        return importlib.import_module("opentelemetry.sdk.trace.export").ConsoleSpanExporter()
    try:
        module = importlib.import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    except ImportError as exc:
        raise TracingError(
            "tracing.exporter=otlp needs opentelemetry-exporter-otlp-proto-http"
            " (pip install 'meshward[otel]')"
        ) from exc
    return module.OTLPSpanExporter()
