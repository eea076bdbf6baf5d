"""Spans sent by the real OpenTelemetry SDK exporters come back exactly through the API."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from tests.conftest import RunningVigil
from tests.spans import checkout_trace, expected_span, now_ns, trace_id_of


def exporter_for(transport: str, vigil: RunningVigil) -> GrpcSpanExporter | HttpSpanExporter:
    if transport == "grpc":
        return GrpcSpanExporter(endpoint=vigil.otlp_grpc, insecure=True)
    compression = Compression.Gzip if transport == "http-gzip" else Compression.NoCompression
    return HttpSpanExporter(endpoint=f"{vigil.otlp_http}/v1/traces", compression=compression)


@pytest.mark.parametrize("transport", ["grpc", "http", "http-gzip"])
def test_sdk_spans_are_stored_and_read_back_exactly(vigil_server: RunningVigil, transport: str) -> None:
    spans = checkout_trace()
    exporter = exporter_for(transport, vigil_server)
    try:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    vigil_server.flush()

    trace_id = trace_id_of(spans)
    response = httpx.get(f"{vigil_server.api}/api/v1/traces/{trace_id}")
    assert response.status_code == 200
    expected = sorted((expected_span(s) for s in spans), key=lambda s: (s["start_time_unix_nano"], s["span_id"]))
    assert response.json() == {"trace_id": trace_id, "spans": expected}


def test_a_trace_is_found_by_search_with_its_summary(vigil_server: RunningVigil) -> None:
    start = now_ns() - 2_000_000_000
    spans = checkout_trace(start)
    exporter = exporter_for("grpc", vigil_server)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()
    vigil_server.flush()
    summary = {
        "trace_id": trace_id_of(spans),
        "root_service": "shop",
        "root_name": "GET /checkout",
        "start_time_unix_nano": start,
        "duration_ns": 30_000_000,
        "span_count": 3,
        "error_count": 1,
        "services": ["payments", "shop"],
    }
    queries = [
        {"service": "payments", "status": "error"},
        {"operation": "GET /checkout", "min_duration_ms": 29},
        {"since": "5m"},
    ]
    for params in queries:
        response = httpx.get(f"{vigil_server.api}/api/v1/traces", params=params)
        assert response.status_code == 200, response.text
        assert response.json() == [summary], params
    # A filter that matches no span of the trace finds nothing.
    miss = httpx.get(f"{vigil_server.api}/api/v1/traces", params={"service": "shop", "min_duration_ms": 31})
    assert miss.json() == []


def test_services_report_rate_errors_and_latency_from_the_rollup(vigil_server: RunningVigil) -> None:
    start = now_ns() - 3_000_000_000
    batches = [checkout_trace(start + i * 40_000_000) for i in range(3)]
    exporter = exporter_for("http", vigil_server)
    for spans in batches:
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()
    vigil_server.flush()

    response = httpx.get(f"{vigil_server.api}/api/v1/services", params={"since": "15m"})
    assert response.status_code == 200
    # Entry spans only: shop's SERVER span (30 ms) and payments' SERVER span (18 ms, an error) per trace.
    assert response.json() == [
        {"service": "payments", "requests": 3, "rate_per_s": round(3 / 900, 3), "error_rate": 1.0,
         "p50_ms": 18.0, "p95_ms": 18.0, "p99_ms": 18.0},
        {"service": "shop", "requests": 3, "rate_per_s": round(3 / 900, 3), "error_rate": 0.0,
         "p50_ms": 30.0, "p95_ms": 30.0, "p99_ms": 30.0},
    ]  # fmt: skip


def test_an_unknown_trace_is_a_404_that_says_why(vigil_server: RunningVigil) -> None:
    response = httpx.get(f"{vigil_server.api}/api/v1/traces/{'ab' * 16}")
    assert response.status_code == 404
    assert response.json() == {
        "detail": f"trace {'ab' * 16} was not found; it may be older than the traces retention or not yet sent"
    }


@pytest.mark.parametrize(
    ("url", "loc", "msg"),
    [
        ("/api/v1/traces/xyz", ["path", "trace_id"],
         "'xyz' is not valid for trace_id: expected 32 hexadecimal characters"),
        ("/api/v1/services?since=soon", ["query", "since"],
         "'soon' is not valid for since: expected a duration such as 15m, 1h or 7d"),
        ("/api/v1/traces?since=100d", ["query", "since"],
         "'100d' is not valid for since: expected a duration between 1s and 90d"),
    ],
)  # fmt: skip
def test_bad_query_parameters_get_a_422_naming_the_parameter(
    vigil_server: RunningVigil, url: str, loc: list[str], msg: str
) -> None:
    response = httpx.get(f"{vigil_server.api}{url}")
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert (error["loc"], error["msg"]) == (loc, msg)


def test_fastapi_validation_names_the_parameter_too(vigil_server: RunningVigil) -> None:
    response = httpx.get(f"{vigil_server.api}/api/v1/traces", params={"limit": 0})
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["query", "limit"]]


def test_health_and_readiness_probes_answer(vigil_server: RunningVigil) -> None:
    assert httpx.get(f"{vigil_server.api}/healthz").json() == {"status": "ok"}
    # `vigil serve` runs a collector: ready while its spill queue (the write-ahead log) has room.
    assert httpx.get(f"{vigil_server.api}/readyz").json() == {
        "status": "ready",
        "store": "up",
        "spill_queue_bytes": 0,
        "spill_queue_limit": 2 * 1024**3,
    }


def test_openapi_describes_every_api_route(vigil_server: RunningVigil) -> None:
    paths = httpx.get(f"{vigil_server.api}/openapi.json").json()["paths"]
    assert sorted(paths) == [
        "/api/v1/alert-rules",
        "/api/v1/alerts",
        "/api/v1/canary/analyses",
        "/api/v1/canary/analyses/{analysis_id}",
        "/api/v1/deploys",
        "/api/v1/deploys/{deploy_id}",
        "/api/v1/findings",
        "/api/v1/findings/{finding_id}",
        "/api/v1/logs",
        "/api/v1/logs/patterns",
        "/api/v1/metrics",
        "/api/v1/metrics/query",
        "/api/v1/network/health",
        "/api/v1/network/throughput",
        "/api/v1/network/top-talkers",
        "/api/v1/services",
        "/api/v1/silences",
        "/api/v1/silences/{silence_id}",
        "/api/v1/slos",
        "/api/v1/slos/{name}",
        "/api/v1/traces",
        "/api/v1/traces/{trace_id}",
        "/healthz",
        "/readyz",
    ]
