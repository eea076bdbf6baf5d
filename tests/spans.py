"""Span generators for tests: real OpenTelemetry SDK spans, and raw OTLP requests."""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

KIND_NAMES = {
    SpanKind.INTERNAL: "Internal",
    SpanKind.SERVER: "Server",
    SpanKind.CLIENT: "Client",
    SpanKind.PRODUCER: "Producer",
    SpanKind.CONSUMER: "Consumer",
}
STATUS_NAMES = {StatusCode.UNSET: "Unset", StatusCode.OK: "Ok", StatusCode.ERROR: "Error"}


def now_ns() -> int:
    return time.time_ns()


def checkout_trace(start_ns: int | None = None) -> list[ReadableSpan]:
    """One trace across two services with every attribute type, events, a link and an error.

    shop   GET /checkout (SERVER, 30 ms)
      shop   POST payments (CLIENT, 20 ms)
        payments charge (SERVER, 18 ms, ERROR "card declined")
    """
    start = start_ns or now_ns() - 1_000_000_000
    exporter = InMemorySpanExporter()
    shop = TracerProvider(resource=Resource.create({"service.name": "shop", "service.version": "2.1.0", "host.cpu": 8}))
    payments = TracerProvider(resource=Resource.create({"service.name": "payments", "service.version": "0.9.3"}))
    for provider in (shop, payments):
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    shop_tracer = shop.get_tracer("shop.http", "1.2.3")
    pay_tracer = payments.get_tracer("payments.rpc")

    root = shop_tracer.start_span(
        "GET /checkout",
        kind=SpanKind.SERVER,
        start_time=start,
        attributes={
            "http.request.method": "GET",
            "http.response.status_code": 502,
            "cart.total": 99.95,
            "user.premium": True,
            "cart.skus": ["A1", "B2"],
            "cart.quantities": [1, 3],
            "cart.prices": [9.5, 0.25],
            "cart.gift": [False, True],
        },
    )
    root_ctx = trace.set_span_in_context(root)
    client = shop_tracer.start_span(
        "POST payments", context=root_ctx, kind=SpanKind.CLIENT, start_time=start + 5_000_000
    )
    client.add_event("request.sent", {"bytes": 512, "retry": False}, timestamp=start + 5_100_000)
    server = pay_tracer.start_span(
        "charge",
        context=trace.set_span_in_context(client),
        kind=SpanKind.SERVER,
        start_time=start + 6_000_000,
        links=[Link(root.get_span_context(), {"link.reason": "audit", "link.weight": 2})],
    )
    server.set_status(Status(StatusCode.ERROR, "card declined"))
    server.add_event("exception", {"exception.type": "CardDeclined", "exception.message": "insufficient funds"},
                     timestamp=start + 23_000_000)  # fmt: skip
    server.end(end_time=start + 24_000_000)
    client.end(end_time=start + 25_000_000)
    root.end(end_time=start + 30_000_000)
    for provider in (shop, payments):
        provider.shutdown()
    return list(exporter.get_finished_spans())


def expected_span(span: ReadableSpan) -> dict[str, Any]:
    """What the traces API must return for one SDK span."""
    ctx = span.get_span_context()
    assert ctx is not None and span.start_time is not None and span.end_time is not None
    return {
        "span_id": format(ctx.span_id, "016x"),
        "parent_span_id": format(span.parent.span_id, "016x") if span.parent else "",
        "name": span.name,
        "service": span.resource.attributes["service.name"],
        "kind": KIND_NAMES[span.kind],
        "start_time_unix_nano": span.start_time,
        "duration_ns": span.end_time - span.start_time,
        "status_code": STATUS_NAMES[span.status.status_code],
        "status_message": span.status.description or "",
        "trace_state": "",
        "scope": {
            "name": span.instrumentation_scope.name if span.instrumentation_scope else "",
            "version": (span.instrumentation_scope.version or "") if span.instrumentation_scope else "",
        },
        "attributes": {k: list(v) if isinstance(v, tuple) else v for k, v in (span.attributes or {}).items()},
        "resource": dict(span.resource.attributes),
        "events": [
            {"time_unix_nano": e.timestamp, "name": e.name, "attributes": dict(e.attributes or {})} for e in span.events
        ],
        "links": [
            {
                "trace_id": format(link.context.trace_id, "032x"),
                "span_id": format(link.context.span_id, "016x"),
                "trace_state": "",
                "attributes": dict(link.attributes or {}),
            }
            for link in span.links
        ],
    }


def trace_id_of(spans: list[ReadableSpan]) -> str:
    ctx = spans[0].get_span_context()
    assert ctx is not None
    return format(ctx.trace_id, "032x")


def raw_request(spans: list[dict[str, Any]], service: str = "raw") -> ExportTraceServiceRequest:
    """An ExportTraceServiceRequest from plain dicts: trace_id, span_id (bytes), name, start, end, ..."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=service)))
    scope_spans = resource_spans.scope_spans.add()
    for fields in spans:
        span = scope_spans.spans.add()
        span.trace_id = fields["trace_id"]
        span.span_id = fields["span_id"]
        span.name = fields.get("name", "op")
        span.kind = fields.get("kind", 2)
        span.start_time_unix_nano = fields["start"]
        span.end_time_unix_nano = fields["end"]
        span.status.code = fields.get("status", 0)
    return request
