"""Spans of several services at chosen times, from the real OpenTelemetry SDK, for the services
pages and their read queries; and writing them through the real store path (OTLP protobuf,
Vigil's decoder, StoreWriter) when no server runs."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from vigil.collector.decode.otlp_traces import decode_traces_protobuf
from vigil.store.write import StoreWriter

__all__ = ["SpanBuilder", "shop_and_payments_spans", "store_spans", "trace_id_hex"]


class SpanBuilder:
    """Ended SDK spans with explicit start, duration, status and `service.version`.

    >>> spans = SpanBuilder()
    >>> root = spans.add("shop", "GET /", start_s=1e9, ms=30)
    >>> _ = spans.add("payments", "charge", start_s=1e9 + 0.005, ms=10, parent=root)
    >>> [s.name for s in spans.finished()]
    ['GET /', 'charge']
    """

    def __init__(self) -> None:
        self._exporter = InMemorySpanExporter()
        self._providers: dict[tuple[str, str], TracerProvider] = {}

    def _tracer(self, service: str, version: str) -> trace.Tracer:
        key = (service, version)
        if key not in self._providers:
            attributes = {"service.name": service}
            if version:
                attributes["service.version"] = version
            provider = TracerProvider(resource=Resource.create(attributes))
            provider.add_span_processor(SimpleSpanProcessor(self._exporter))
            self._providers[key] = provider
        return self._providers[key].get_tracer("tests.service_spans")

    def add(
        self,
        service: str,
        name: str,
        *,
        start_s: float,
        ms: float,
        version: str = "",
        kind: SpanKind = SpanKind.SERVER,
        parent: Span | None = None,
        error: bool = False,
    ) -> Span:
        context = trace.set_span_in_context(parent) if parent is not None else None
        start_ns = int(start_s * 1e9)
        span = self._tracer(service, version).start_span(name, context=context, kind=kind, start_time=start_ns)
        if error:
            span.set_status(Status(StatusCode.ERROR, f"{name} failed"))
        span.end(end_time=start_ns + int(ms * 1e6))
        return span

    def finished(self) -> list[ReadableSpan]:
        return list(self._exporter.get_finished_spans())


def trace_id_hex(span: Span) -> str:
    return format(span.get_span_context().trace_id, "032x")


def store_spans(writer: StoreWriter, spans: list[ReadableSpan]) -> None:
    """Writes `spans` as the collector would: OTLP protobuf, decoded by Vigil, inserted by StoreWriter."""
    (batch,) = decode_traces_protobuf(encode_spans(spans).SerializeToString()).batches
    writer.insert(batch.table, batch.rows)


def shop_and_payments_spans(base: float) -> tuple[list[ReadableSpan], dict[str, str]]:
    """Two services over six minutes from `base` (a whole minute), and the trace ids of their failures.

    shop 1.0 serves three GET /cart in minute 0 (10, 20, 30 ms; the last fails, trace "cart");
    shop 2.0 one GET /cart in minute 2 (40 ms) and two POST /pay in minute 3 (100 ms, and 200 ms
    failing, trace "pay"), each calling payments 0.9 through a client span (charge: 60 ms, and
    120 ms failing); in minute 5 an internal span of shop fails in that trace ("cleanup").
    """
    spans = SpanBuilder()
    for offset, ms in ((10, 10), (11, 20), (12, 30)):
        failed = spans.add("shop", "GET /cart", start_s=base + offset, ms=ms, version="1.0", error=ms == 30)
    ids = {"cart": trace_id_hex(failed)}
    spans.add("shop", "GET /cart", start_s=base + 130, ms=40, version="2.0")
    for offset, ms, charge_ms in ((190, 100, 60), (191, 200, 120)):
        pay = spans.add("shop", "POST /pay", start_s=base + offset, ms=ms, version="2.0", error=ms == 200)
        client = spans.add(
            "shop", "charge card", start_s=base + offset + 0.01, ms=charge_ms + 5, version="2.0",
            kind=SpanKind.CLIENT, parent=pay,
        )  # fmt: skip
        spans.add(
            "payments", "charge", start_s=base + offset + 0.012, ms=charge_ms, version="0.9", parent=client,
            error=charge_ms == 120,
        )  # fmt: skip
    ids["pay"] = trace_id_hex(pay)
    cleanup = spans.add("shop", "cleanup", start_s=base + 310, ms=5, version="2.0", kind=SpanKind.INTERNAL,
                        parent=pay, error=True)  # fmt: skip
    ids["cleanup"] = trace_id_hex(cleanup)
    return spans.finished(), ids
