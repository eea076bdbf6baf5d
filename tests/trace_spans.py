"""Traces of any shape from the real OpenTelemetry SDK, described as a tree of `S` specs.

>>> spans = build_trace([S("shop", "GET /", 0, 30, children=[S("db", "query", 5, 25)])], start_ns=10**18)
>>> [(s.name, s.resource.attributes["service.name"], s.end_time - s.start_time) for s in spans]
[('query', 'db', 20000000), ('GET /', 'shop', 30000000)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

__all__ = ["S", "build_trace"]

_STATUSES = {"error": StatusCode.ERROR, "ok": StatusCode.OK}


@dataclass
class S:
    """One span: its service, name, start and end in ms from the trace start, and its children.

    `status` is "error" or "ok" (else unset), `message` the status description; `events` are
    (name, ms from the trace start, attributes); `orphan` gives a top-level span a parent that
    is not in the trace.
    """

    service: str
    name: str
    start_ms: float
    end_ms: float
    kind: SpanKind = SpanKind.SERVER
    status: str | None = None
    message: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, float, dict[str, Any]]] = field(default_factory=list)
    children: list[S] = field(default_factory=list)
    orphan: bool = False


class _OneTraceId(RandomIdGenerator):
    """Every root span gets the same trace id, so several roots (orphans) share one trace."""

    def __init__(self, trace_id: int) -> None:
        self.trace_id = trace_id

    def generate_trace_id(self) -> int:
        return self.trace_id


def build_trace(
    roots: Sequence[S], *, start_ns: int, resources: Mapping[str, Mapping[str, Any]] | None = None
) -> list[ReadableSpan]:
    """The spans of one trace, finished, as an SDK exporter receives them; `resources` adds
    resource attributes per service."""
    trace_id = RandomIdGenerator().generate_trace_id()
    exporter = InMemorySpanExporter()
    providers: dict[str, TracerProvider] = {}

    def tracer(service: str) -> trace.Tracer:
        if service not in providers:
            attributes = {"service.name": service, **(resources or {}).get(service, {})}
            provider = TracerProvider(resource=Resource.create(attributes), id_generator=_OneTraceId(trace_id))
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            providers[service] = provider
        return providers[service].get_tracer(f"{service}.tests", "1.0")

    def ns(ms: float) -> int:
        return start_ns + round(ms * 1_000_000)

    def emit(spec: S, context: Any) -> None:
        span = tracer(spec.service).start_span(
            spec.name, context=context, kind=spec.kind, start_time=ns(spec.start_ms), attributes=spec.attributes
        )
        for name, at_ms, attributes in spec.events:
            span.add_event(name, attributes, timestamp=ns(at_ms))
        if spec.status in _STATUSES:
            span.set_status(Status(_STATUSES[spec.status], spec.message))
        for child in spec.children:
            emit(child, trace.set_span_in_context(span))
        span.end(end_time=ns(spec.end_ms))

    for root in roots:
        context = None
        if root.orphan:
            missing = SpanContext(trace_id, RandomIdGenerator().generate_span_id(), True, TraceFlags(1))
            context = trace.set_span_in_context(NonRecordingSpan(missing))
        emit(root, context)
    for provider in providers.values():
        provider.shutdown()
    return list(exporter.get_finished_spans())
