"""Log generators for tests: real OpenTelemetry SDK log records from Python's logging, through
opentelemetry-instrumentation-logging's handler (the SDK's own is deprecated)."""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from vigil.collector.log_templates import template_id_of

# The template each body of `orders_logs` is stored with: its variable parts masked.
ORDERS_TEMPLATES = {
    "cache warm: 120 keys": "cache warm: <NUM> keys",
    "order A-42 accepted": "order A-<NUM> accepted",
    "payment for order A-42 failed: card declined": "payment for order A-<NUM> failed: card declined",
    "slow query: 100% of budget used": "slow query: <NUM>% of budget used",
}


def orders_logs_with_span(service: str = "orders") -> tuple[list[ReadableLogRecord], str, list[ReadableSpan]]:
    """Four records from Python's logging through the SDK's handler; two inside a span.

    Returns the records, the hex trace id of that span, and the span itself.
    """
    resource = Resource.create({"service.name": service, "service.version": "3.2.1"})
    provider = LoggerProvider(resource=resource)
    memory = InMemoryLogRecordExporter()
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = logging.getLogger(f"app.{service}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
    logger.addHandler(handler)
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = tracer_provider.get_tracer("t")
    try:
        logger.debug("cache warm: %d keys", 120)
        with tracer.start_as_current_span("POST /orders", kind=SpanKind.SERVER) as span:
            logger.info("order %s accepted", "A-42", extra={"order.id": 42, "order.express": True})
            logger.error("payment for order A-42 failed: card declined", extra={"amount": 99.5})
            trace_id = format(span.get_span_context().trace_id, "032x")
        logger.warning("slow query: 100% of budget used")  # no args: logging does not %-format it
        provider.force_flush()
    finally:
        logger.removeHandler(handler)
        provider.shutdown()
        tracer_provider.shutdown()
    return list(memory.get_finished_logs()), trace_id, list(spans.get_finished_spans())


def orders_logs(service: str = "orders") -> tuple[list[ReadableLogRecord], str]:
    records, trace_id, _ = orders_logs_with_span(service)
    return records, trace_id


def expected_log(record: ReadableLogRecord) -> dict[str, Any]:
    """What the logs API must return for one SDK log record."""
    log = record.log_record
    scope = record.instrumentation_scope
    assert log.timestamp is not None and log.observed_timestamp is not None and log.severity_number is not None
    return {
        "time_unix_nano": log.timestamp,
        "observed_time_unix_nano": log.observed_timestamp,
        "trace_id": format(log.trace_id, "032x") if log.trace_id else "",
        "span_id": format(log.span_id, "016x") if log.span_id else "",
        "trace_flags": int(log.trace_flags or 0),
        "severity_text": log.severity_text or "",
        "severity_number": log.severity_number.value,
        "service": record.resource.attributes["service.name"],
        "body": log.body,
        "event_name": log.event_name or "",
        "attributes": dict(log.attributes or {}),
        "resource": dict(record.resource.attributes),
        "scope": {"name": scope.name if scope else "", "version": (scope.version or "") if scope else ""},
        "template_id": template_id_of(ORDERS_TEMPLATES[str(log.body)]),
        "template": ORDERS_TEMPLATES[str(log.body)],
    }


def export_logging_lines(
    endpoint: str, service: str, lines: list[tuple[int, str, tuple[Any, ...]]]
) -> list[ReadableLogRecord]:
    """Log each (level, format, args) through Python's logging and the SDK, exported over OTLP/HTTP to `endpoint`."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    memory = InMemoryLogRecordExporter()
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    exporter = OTLPLogExporter(endpoint=f"{endpoint}/v1/logs")
    logger = logging.getLogger(f"app.{service}.lines")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
    logger.addHandler(handler)
    try:
        for level, message, args in lines:
            logger.log(level, message, *args)
        provider.force_flush()
        records = list(memory.get_finished_logs())
        assert exporter.export(records).name == "SUCCESS"
    finally:
        logger.removeHandler(handler)
        provider.shutdown()
        exporter.shutdown()
    return records
