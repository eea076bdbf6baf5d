"""Metrics of every point type, sent by the real OpenTelemetry SDK exporters, come back through the API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.sdk.metrics.export import MetricExportResult

from tests.conftest import RunningVigil
from tests.metrics import checkout_metrics, summary_metric, summary_point
from tests.spans import now_ns


def send(vigil: RunningVigil, transport: str) -> None:
    metrics = checkout_metrics("checkout")
    if transport == "grpc":
        exporter: GrpcMetricExporter | HttpMetricExporter = GrpcMetricExporter(endpoint=vigil.otlp_grpc, insecure=True)
    else:
        compression = Compression.Gzip if transport == "http-gzip" else Compression.NoCompression
        exporter = HttpMetricExporter(endpoint=f"{vigil.otlp_http}/v1/metrics", compression=compression)
    try:
        assert exporter.export(metrics.data) == MetricExportResult.SUCCESS
    finally:
        exporter.shutdown()
    vigil.flush()


def series(vigil: RunningVigil, name: str, agg: str, **params: Any) -> list[tuple[dict[str, str], list[float]]]:
    """Each series' labels and values (the points' times are checked by the store's own tests)."""
    response = httpx.get(f"{vigil.api}/api/v1/metrics/query", params={"name": name, "agg": agg, **params})
    assert response.status_code == 200, response.text
    return [(s["labels"], [value for _, value in s["points"]]) for s in response.json()["series"]]


@pytest.mark.parametrize("transport", ["grpc", "http", "http-gzip"])
def test_every_sdk_point_type_is_stored_and_queryable(vigil_server: RunningVigil, transport: str) -> None:
    send(vigil_server, transport)
    catalog = httpx.get(f"{vigil_server.api}/api/v1/metrics", params={"service": "checkout"}).json()
    assert [(m["name"], m["type"], m["unit"], m["label_keys"]) for m in catalog] == [
        ("cart.items", "sum", "", ["cart.kind"]),
        ("db.query.duration", "exponential_histogram", "ms", []),
        ("http.server.duration", "histogram", "ms", ["http.route"]),
        ("http.server.requests", "sum", "{request}", ["http.route"]),
        ("process.cpu.utilization", "gauge", "1", ["cpu"]),
    ]
    assert catalog[3]["description"] == "HTTP requests served"
    assert series(vigil_server, "http.server.requests", "sum", group_by="http.route") == [
        ({"http.route": "/cart"}, [3.0]),
        ({"http.route": "/pay"}, [1.0]),
    ]
    assert series(vigil_server, "process.cpu.utilization", "avg", group_by="cpu") == [
        ({"cpu": "0"}, [0.25]),
        ({"cpu": "1"}, [0.75]),
    ]
    # An up-down counter: 5 then -2, cumulative and not monotonic.
    assert series(vigil_server, "cart.items", "max") == [({}, [3.0])]
    assert series(vigil_server, "cart.items", "sum") == [({}, [3.0])]
    # 7.5, 42 and 250 ms in buckets (-inf, 10], (10, 50], (50, 100], (100, +inf), min 7.5, max 250.
    duration = "http.server.duration"
    assert series(vigil_server, duration, "avg") == [({}, [pytest.approx((7.5 + 42 + 250) / 3)])]
    assert series(vigil_server, duration, "sum") == [({}, [299.5])]
    assert series(vigil_server, duration, "max") == [({}, [250.0])]
    assert series(vigil_server, duration, "min") == [({}, [7.5])]
    assert series(vigil_server, duration, "p50") == [({}, [30.0])]  # rank 1.5: halfway through (10, 50]
    assert series(vigil_server, duration, "p95") == [({}, [pytest.approx(227.5)])]  # rank 2.85 in (100, 250]
    assert [v * 60 for v in series(vigil_server, duration, "rate", step="60s")[0][1]] == [pytest.approx(3.0)]
    # 1, 2 and 4 ms at scale 2: buckets (2**(i/4), 2**((i+1)/4)] with i = -1, 3 and 7.
    assert series(vigil_server, "db.query.duration", "p50") == [({}, [pytest.approx(2**0.75 + (2 - 2**0.75) / 2)])]
    assert series(vigil_server, "db.query.duration", "max") == [({}, [4.0])]


def test_summaries_are_stored_with_their_quantiles(vigil_server: RunningVigil) -> None:
    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.add(key="service.name").value.string_value = "legacy"
    point = summary_point(now_ns(), 10, 250.0, {0.0: 3.0, 0.5: 20.0, 0.99: 70.0, 1.0: 80.0}, route="/old")
    resource.scope_metrics.add().metrics.append(summary_metric("rpc.latency", point))
    response = httpx.post(
        f"{vigil_server.otlp_http}/v1/metrics",
        content=request.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert response.status_code == 200
    vigil_server.flush()
    assert series(vigil_server, "rpc.latency", "p99", group_by="route") == [({"route": "/old"}, [70.0])]
    assert series(vigil_server, "rpc.latency", "p50") == [({}, [20.0])]
    assert series(vigil_server, "rpc.latency", "max") == [({}, [80.0])]
    # One cumulative point whose series started a minute ago, inside the window: all of it is new.
    assert series(vigil_server, "rpc.latency", "avg") == [({}, [25.0])]


def test_invalid_points_are_rejected_by_name_and_the_rest_kept(vigil_server: RunningVigil) -> None:
    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.add(key="service.name").value.string_value = "shop"
    metric = resource.scope_metrics.add().metrics.add(name="temp")
    metric.gauge.data_points.add(time_unix_nano=now_ns(), as_double=21.5)
    metric.gauge.data_points.add(time_unix_nano=0, as_double=99.0)
    response = httpx.post(
        f"{vigil_server.otlp_http}/v1/metrics",
        content=request.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )
    assert response.status_code == 200
    partial = ExportMetricsServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_data_points == 1
    assert "time_unix_nano" in partial.error_message
    vigil_server.flush()
    assert series(vigil_server, "temp", "max") == [({}, [21.5])]
