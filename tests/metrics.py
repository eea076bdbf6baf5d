"""Metric generators for tests: real OpenTelemetry SDK metrics encoded as the OTLP exporter sends
them, OTLP summaries (which the Python SDK does not make), OTLP/JSON, and a synthetic request of
realistic shape for benchmarks."""

from __future__ import annotations

import random
import time
from typing import Any, NamedTuple

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader, MetricsData
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from tests.collector.otlp_values import otlp_json

DELTA = AggregationTemporality.DELTA
CUMULATIVE = AggregationTemporality.CUMULATIVE


class SdkMetrics(NamedTuple):
    """One collection of the SDK's metrics, as data and as the OTLP request the exporter sends."""

    data: MetricsData
    request: ExportMetricsServiceRequest
    trace_id: str  # hex ids of the span the exemplars were recorded in
    span_id: str


def checkout_metrics(service: str = "checkout", histograms: AggregationTemporality = CUMULATIVE) -> SdkMetrics:
    """Every point type the SDK makes, from one meter, collected once. In request order:

    - ``http.server.requests``: Counter (sum, delta, monotonic), two points; the View keeps only
      ``http.route``, so the status code of the one recorded in the span is an exemplar's filtered attribute
    - ``http.server.duration``: Histogram, bounds 10, 50, 100; 7.5, 42 and 250 ms, in the span
    - ``db.query.duration``: Histogram as an exponential histogram (max scale 2); 1, 2 and 4 ms
    - ``cart.items``: UpDownCounter (sum, cumulative, not monotonic), 5 then -2
    - ``process.cpu.utilization``: ObservableGauge, 0.25 for cpu 0 and 0.75 for cpu 1

    Counters are delta, histograms `histograms`, the rest cumulative.
    """
    reader = InMemoryMetricReader(preferred_temporality={Counter: DELTA, Histogram: histograms})
    views = [
        View(instrument_name="http.server.requests", attribute_keys={"http.route"}),
        View(instrument_name="http.server.duration", aggregation=ExplicitBucketHistogramAggregation((10, 50, 100))),
        View(instrument_name="db.query.duration", aggregation=ExponentialBucketHistogramAggregation(max_scale=2)),
    ]
    resource = Resource.create({"service.name": service, "service.version": "1.4.2"})
    meters = MeterProvider(metric_readers=[reader], resource=resource, views=views, shutdown_on_exit=False)
    tracers = TracerProvider(resource=resource)
    try:
        meter = meters.get_meter("shop.metrics", "0.9")
        requests = meter.create_counter("http.server.requests", unit="{request}", description="HTTP requests served")
        duration = meter.create_histogram("http.server.duration", unit="ms")
        queries = meter.create_histogram("db.query.duration", unit="ms")
        items = meter.create_up_down_counter("cart.items")

        def cpu(_: CallbackOptions) -> list[Observation]:
            return [Observation(0.25, {"cpu": 0}), Observation(0.75, {"cpu": 1})]

        meter.create_observable_gauge("process.cpu.utilization", callbacks=[cpu], unit="1")
        with tracers.get_tracer("shop.http").start_as_current_span("POST /cart") as span:
            requests.add(3, {"http.route": "/cart", "http.response.status_code": 200})
            for ms in (7.5, 42.0, 250.0):
                duration.record(ms, {"http.route": "/cart"})
        requests.add(1, {"http.route": "/pay", "http.response.status_code": 500})
        for ms in (1.0, 2.0, 4.0):
            queries.record(ms)
        items.add(5, {"cart.kind": "guest"})
        items.add(-2, {"cart.kind": "guest"})
        data = reader.get_metrics_data()
        assert data is not None
    finally:
        meters.shutdown()
        tracers.shutdown()
    context = span.get_span_context()
    return SdkMetrics(data, encode_metrics(data), f"{context.trace_id:032x}", f"{context.span_id:016x}")


def summary_metric(name: str, *points: pb.SummaryDataPoint, unit: str = "ms") -> pb.Metric:
    """A summary metric (the Python SDK makes none; Prometheus and StatsD bridges do)."""
    return pb.Metric(name=name, unit=unit, summary=pb.Summary(data_points=points))


def summary_point(time_ns: int, count: int, total: float, quantiles: dict[float, float], **attrs: str) -> Any:
    return pb.SummaryDataPoint(
        start_time_unix_nano=time_ns - 60_000_000_000,
        time_unix_nano=time_ns,
        count=count,
        sum=total,
        quantile_values=[pb.SummaryDataPoint.ValueAtQuantile(quantile=q, value=v) for q, v in quantiles.items()],
        attributes=[KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attrs.items()],
    )


def metrics_json(
    req: ExportMetricsServiceRequest, *, numbers: bool = False, upper: bool = False, enum_names: bool = False
) -> bytes:
    """OTLP/JSON for a metrics request as peers send it (see `otlp_json`)."""
    return otlp_json(req, numbers=numbers, upper=upper, enum_names=enum_names)


def _kvs(attrs: dict[str, object]) -> list[KeyValue]:
    def value(v: object) -> AnyValue:
        if isinstance(v, bool):
            return AnyValue(bool_value=v)
        if isinstance(v, int):
            return AnyValue(int_value=v)
        if isinstance(v, float):
            return AnyValue(double_value=v)
        return AnyValue(string_value=str(v))

    return [KeyValue(key=k, value=value(v)) for k, v in attrs.items()]


def synthetic_request(points: int = 1000, seed: int = 1) -> ExportMetricsServiceRequest:
    """A request shaped like a busy service's export: one resource with the usual attributes, two
    scopes, metrics of 25 points each (40% sums, 20% gauges, 30% histograms with 15 bounds, 10%
    exponential histograms), 4 or 5 attributes a point, an exemplar on one point in five."""
    rng = random.Random(seed)
    t0 = time.time_ns()
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(
        _kvs(
            {
                "service.name": "checkout",
                "service.version": "2.3.1",
                "service.instance.id": "4f6c1a9e-0d1b-4c1e-9a53-1c2f3b4d5e6f",
                "host.name": "ip-10-0-3-17",
                "k8s.pod.name": "checkout-7d9c8b7f6-x2x9z",
                "k8s.namespace.name": "shop",
                "telemetry.sdk.language": "python",
                "telemetry.sdk.version": "1.45.2",
            }
        )
    )
    scopes = [rm.scope_metrics.add(), rm.scope_metrics.add()]
    scopes[0].scope.name, scopes[0].scope.version = "opentelemetry.instrumentation.flask", "0.66b2"
    scopes[1].scope.name = "checkout.business"
    bounds = [0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000]
    made, m = 0, 0
    while made < points:
        kind = ("sum", "sum", "gauge", "histogram", "sum", "histogram", "sum", "gauge", "histogram", "exp")[m % 10]
        metric = scopes[m % 2].metrics.add(name=f"app.{kind}.metric_{m}", unit="ms", description=f"metric {m}")
        for k in range(min(25, points - made)):
            attrs = _kvs(
                {
                    "http.route": f"/api/v1/items/{k % 7}",
                    "http.request.method": ("GET", "POST")[k % 2],
                    "http.response.status_code": (200, 201, 404, 500)[k % 4],
                    "server.address": "checkout.shop.svc",
                    **({"retry": True} if k % 5 == 0 else {}),
                }
            )
            exemplars = []
            if k % 5 == 1:
                exemplar = pb.Exemplar(time_unix_nano=t0 - 1000, span_id=rng.randbytes(8), trace_id=rng.randbytes(16))
                exemplar.as_double = rng.random() * 100
                exemplars.append(exemplar)
            common: dict[str, Any] = {
                "attributes": attrs,
                "start_time_unix_nano": t0 - 60_000_000_000,
                "time_unix_nano": t0 + k,
                "exemplars": exemplars,
            }
            if kind in ("sum", "gauge"):
                point = pb.NumberDataPoint(**common)
                if k % 3:
                    point.as_double = rng.random() * 1000
                else:
                    point.as_int = rng.randrange(1_000_000)
                getattr(metric, kind).data_points.append(point)
            elif kind == "histogram":
                counts = [rng.randrange(50) for _ in range(len(bounds) + 1)]
                metric.histogram.data_points.add(
                    **common,
                    count=sum(counts),
                    sum=rng.random() * 1e5,
                    bucket_counts=counts,
                    explicit_bounds=bounds,
                    min=0.5,
                    max=9000.0,
                )
            else:
                counts = [rng.randrange(50) for _ in range(20)]
                metric.exponential_histogram.data_points.add(
                    **common,
                    count=sum(counts),
                    sum=rng.random() * 1e5,
                    scale=3,
                    zero_count=1,
                    positive=pb.ExponentialHistogramDataPoint.Buckets(offset=10, bucket_counts=counts),
                    min=0.1,
                    max=500.0,
                )
        if kind == "sum":
            metric.sum.aggregation_temporality, metric.sum.is_monotonic = pb.AGGREGATION_TEMPORALITY_DELTA, True
        elif kind == "histogram":
            metric.histogram.aggregation_temporality = pb.AGGREGATION_TEMPORALITY_DELTA
        elif kind == "exp":
            metric.exponential_histogram.aggregation_temporality = pb.AGGREGATION_TEMPORALITY_DELTA
        made += min(25, points - made)
        m += 1
    return req
