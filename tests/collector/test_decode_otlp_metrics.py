"""Decoding OTLP metric requests (protobuf and JSON) into rows of the five metrics tables."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb
from opentelemetry.sdk.metrics.export import ExponentialHistogram, Gauge, Histogram, Sum

from tests.collector.otlp_values import SPAN, TRACE, kvs, ts
from tests.metrics import (
    CUMULATIVE,
    DELTA,
    SdkMetrics,
    checkout_metrics,
    metrics_json,
    summary_metric,
    summary_point,
    synthetic_request,
)
from vigil.collector.decode import otlp_metrics
from vigil.collector.decode.otlp import PROTOBUF, decode_otlp_request
from vigil.collector.decode.otlp_metrics import decode_metrics_json, decode_metrics_protobuf
from vigil.errors import DecodeError
from vigil.store.schema import METRIC_ARROW_SCHEMAS, METRIC_TABLES
from vigil.types import DecodeResult

T0 = 1_700_000_000_000_000_000
Rows = dict[str, list[dict[str, Any]]]


# ---- building requests and expected rows -------------------------------------------------------


def number(value: float | None = 1.5, **fields: Any) -> pb.NumberDataPoint:
    """A valid number point (value: an int sets as_int, None sets neither), `fields` on top."""
    attrs = fields.pop("attributes", {})
    base: dict[str, Any] = {"start_time_unix_nano": T0 - 10, "time_unix_nano": T0}
    point = pb.NumberDataPoint(**(base | fields), attributes=kvs(attrs))
    if isinstance(value, int):
        point.as_int = value
    elif value is not None:
        point.as_double = value
    return point


def hist_point(**fields: Any) -> pb.HistogramDataPoint:
    base: dict[str, Any] = {"start_time_unix_nano": T0 - 10, "time_unix_nano": T0, "count": 3, "sum": 6.0}
    base |= {"bucket_counts": [1, 2], "explicit_bounds": [5.0], "min": 1.0, "max": 4.0}
    attrs = fields.pop("attributes", {})
    return pb.HistogramDataPoint(**(base | fields), attributes=kvs(attrs))


def gauge(name: str, *points: pb.NumberDataPoint, **fields: Any) -> pb.Metric:
    return pb.Metric(name=name, gauge=pb.Gauge(data_points=points), **fields)


def total(name: str, *points: pb.NumberDataPoint, temporality: int = 2, monotonic: bool = True) -> pb.Metric:
    data = pb.Sum(data_points=points, aggregation_temporality=temporality, is_monotonic=monotonic)
    return pb.Metric(name=name, sum=data)


def histogram(name: str, *points: pb.HistogramDataPoint, temporality: int = 2) -> pb.Metric:
    return pb.Metric(name=name, histogram=pb.Histogram(data_points=points, aggregation_temporality=temporality))


def request(
    *metrics: pb.Metric, resource: dict[str, object] | None = None, scope: tuple[str, str] = ("", "")
) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(kvs({"service.name": "checkout"} if resource is None else resource))
    sm = rm.scope_metrics.add()
    sm.scope.name, sm.scope.version = scope
    sm.metrics.extend(metrics)
    return req


NO_EXEMPLARS: dict[str, object] = {
    "Exemplars.FilteredAttributes": [],
    "Exemplars.FilteredAttributeTypes": [],
    "Exemplars.TimeUnix": [],
    "Exemplars.Value": [],
    "Exemplars.SpanId": [],
    "Exemplars.TraceId": [],
}
POINT_DEFAULTS: dict[str, dict[str, object]] = {
    "metrics_gauge": {"Value": 1.5, **NO_EXEMPLARS},
    "metrics_sum": {"Value": 1.5, "AggregationTemporality": 2, "IsMonotonic": True, **NO_EXEMPLARS},
    "metrics_histogram": {
        **{"Count": 3, "Sum": 6.0, "BucketCounts": [1, 2], "ExplicitBounds": [5.0], "Min": 1.0, "Max": 4.0},
        **{"AggregationTemporality": 2, **NO_EXEMPLARS},
    },
}


def row(table: str, name: str, **columns: object) -> dict[str, object]:
    """The expected row of a default point of `table` (`number()`, `hist_point()`) in `request()`."""
    base: dict[str, object] = {
        "ServiceName": "checkout",
        "ServiceVersion": "",
        "ResourceAttributes": [("service.name", "checkout")],
        "ResourceAttributeTypes": [],
        "ScopeName": "",
        "ScopeVersion": "",
        "MetricName": name,
        "MetricDescription": "",
        "MetricUnit": "",
        "Attributes": [],
        "AttributeTypes": [],
        "StartTimeUnix": ts(T0 - 10),
        "TimeUnix": ts(T0),
        "Flags": 0,
        **POINT_DEFAULTS[table],
    }
    assert set(columns) <= set(base), set(columns) - set(base)
    assert list(base) == METRIC_ARROW_SCHEMAS[table].names
    return base | columns


def identity_columns(name: str) -> dict[str, object]:
    """The identity columns every table starts with, as `row()` has them."""
    return {k: v for k, v in row("metrics_gauge", name).items() if k in METRIC_ARROW_SCHEMAS["metrics_summary"].names}


def nan_safe(node: object) -> object:
    """`node` with NaN as the text "NaN", so that rows with NaN compare equal."""
    if isinstance(node, float) and math.isnan(node):
        return "NaN"
    if isinstance(node, list):
        return [nan_safe(x) for x in node]
    if isinstance(node, tuple):
        return tuple(nan_safe(x) for x in node)
    if isinstance(node, dict):
        return {k: nan_safe(v) for k, v in node.items()}
    return node


def tables(result: DecodeResult) -> Rows:
    """Rows by table, checked: the exact schemas, no empty batch, batches in `METRIC_TABLES` order."""
    names = [batch.table for batch in result.batches]
    assert names == [t for t in METRIC_TABLES.values() if t in names]
    for batch in result.batches:
        assert batch.rows.schema.equals(METRIC_ARROW_SCHEMAS[batch.table])
        assert batch.num_rows > 0
    return {batch.table: nan_safe(batch.rows.to_pylist()) for batch in result.batches}  # type: ignore[misc]


def both(req: ExportMetricsServiceRequest, **json_options: bool) -> Rows:
    """The rows of `req` by the protobuf path, checked to be those of the OTLP/JSON path too."""
    result = decode_metrics_protobuf(req.SerializeToString())
    assert (result.rejected, result.error_message) == (0, "")
    got = tables(result)
    assert tables(decode_metrics_json(metrics_json(req, **json_options))) == got
    return got


# ---- the real SDK ----------------------------------------------------------------------------


def attr_columns(attrs: Any) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """SDK attributes as the attribute map and its type map."""
    names = {bool: "bool", int: "int", float: "double"}
    texts = [(k, ("true" if v else "false") if isinstance(v, bool) else str(v)) for k, v in (attrs or {}).items()]
    return texts, [(k, names[type(v)]) for k, v in (attrs or {}).items() if not isinstance(v, str)]


def sdk_rows(sdk: SdkMetrics) -> Rows:
    """What the SDK's `MetricsData` must decode to, read from the SDK's objects, not from OTLP."""
    out: Rows = {}
    for rm in sdk.data.resource_metrics:
        resource, resource_types = attr_columns(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                data = metric.data
                for p in data.data_points:
                    attrs, attr_types = attr_columns(p.attributes)
                    r: dict[str, Any] = {
                        "ServiceName": rm.resource.attributes["service.name"],
                        "ServiceVersion": rm.resource.attributes["service.version"],
                        "ResourceAttributes": resource,
                        "ResourceAttributeTypes": resource_types,
                        "ScopeName": sm.scope.name,
                        "ScopeVersion": sm.scope.version,
                        "MetricName": metric.name,
                        "MetricDescription": metric.description,
                        "MetricUnit": metric.unit,
                        "Attributes": attrs,
                        "AttributeTypes": attr_types,
                        # the OTLP exporter leaves out a gauge's start time
                        "StartTimeUnix": ts(0 if isinstance(data, Gauge) else p.start_time_unix_nano),
                        "TimeUnix": ts(p.time_unix_nano),
                        "Flags": getattr(p, "flags", 0),
                    }
                    if isinstance(data, Gauge | Sum):
                        r["Value"] = float(p.value)
                    if isinstance(data, Sum):
                        r["AggregationTemporality"], r["IsMonotonic"] = data.aggregation_temporality, data.is_monotonic
                    if isinstance(data, Histogram):
                        r |= {"Count": p.count, "Sum": p.sum, "BucketCounts": list(p.bucket_counts)}
                        r |= {"ExplicitBounds": [float(b) for b in p.explicit_bounds], "Min": p.min, "Max": p.max}
                    if isinstance(data, ExponentialHistogram):
                        r |= {"Count": p.count, "Sum": p.sum, "Scale": p.scale, "ZeroCount": p.zero_count}
                        r |= {"ZeroThreshold": 0.0, "PositiveOffset": p.positive.offset}
                        r |= {"PositiveBucketCounts": list(p.positive.bucket_counts)}
                        r |= {"NegativeOffset": p.negative.offset}
                        r |= {"NegativeBucketCounts": list(p.negative.bucket_counts), "Min": p.min, "Max": p.max}
                    if isinstance(data, Histogram | ExponentialHistogram):
                        r["AggregationTemporality"] = data.aggregation_temporality
                    exemplars = [attr_columns(e.filtered_attributes) for e in p.exemplars]
                    r["Exemplars.FilteredAttributes"] = [texts for texts, _ in exemplars]
                    r["Exemplars.FilteredAttributeTypes"] = [types for _, types in exemplars]
                    r["Exemplars.TimeUnix"] = [ts(e.time_unix_nano) for e in p.exemplars]
                    r["Exemplars.Value"] = [float(e.value) for e in p.exemplars]
                    r["Exemplars.SpanId"] = [f"{e.span_id:016x}" for e in p.exemplars]
                    r["Exemplars.TraceId"] = [f"{e.trace_id:032x}" for e in p.exemplars]
                    table = METRIC_TABLES[
                        {Gauge: "gauge", Sum: "sum", Histogram: "histogram"}.get(type(data), "exponential_histogram")
                    ]
                    out.setdefault(table, []).append(r)
    return out


@pytest.mark.parametrize("histograms", [CUMULATIVE, DELTA], ids=["cumulative-histograms", "delta-histograms"])
def test_metrics_from_the_real_sdk_decode_to_their_exact_rows(histograms: Any) -> None:
    sdk = checkout_metrics(histograms=histograms)

    got = both(sdk.request)

    assert got == sdk_rows(sdk)
    # The same, spelled out for what matters most.
    gauge_rows, sum_rows = got["metrics_gauge"], got["metrics_sum"]
    hist, exp = got["metrics_histogram"], got["metrics_exp_histogram"]
    assert [(r["MetricName"], r["Value"], r["Attributes"], r["AttributeTypes"]) for r in gauge_rows] == [
        ("process.cpu.utilization", 0.25, [("cpu", "0")], [("cpu", "int")]),
        ("process.cpu.utilization", 0.75, [("cpu", "1")], [("cpu", "int")]),
    ]
    assert [(r["MetricName"], r["Value"], r["AggregationTemporality"], r["IsMonotonic"]) for r in sum_rows] == [
        ("http.server.requests", 3.0, 1, True),
        ("http.server.requests", 1.0, 1, True),
        ("cart.items", 3.0, 2, False),
    ]
    assert sum_rows[0]["MetricUnit"] == "{request}"
    assert sum_rows[0]["MetricDescription"] == "HTTP requests served"
    assert sum_rows[0]["Attributes"] == [("http.route", "/cart")]
    assert sum_rows[0]["Exemplars.FilteredAttributes"] == [[("http.response.status_code", "200")]]
    assert sum_rows[0]["Exemplars.FilteredAttributeTypes"] == [[("http.response.status_code", "int")]]
    assert sum_rows[0]["Exemplars.Value"] == [3.0]
    assert (sum_rows[0]["Exemplars.TraceId"], sum_rows[0]["Exemplars.SpanId"]) == ([sdk.trace_id], [sdk.span_id])
    assert sum_rows[1]["Exemplars.TraceId"] == []  # recorded outside the span
    temporality = 1 if histograms == DELTA else 2
    assert {k: hist[0][k] for k in ("Count", "Sum", "BucketCounts", "ExplicitBounds", "Min", "Max")} == {
        "Count": 3,
        "Sum": 299.5,
        "BucketCounts": [1, 1, 0, 1],
        "ExplicitBounds": [10.0, 50.0, 100.0],
        "Min": 7.5,
        "Max": 250.0,
    }
    assert hist[0]["AggregationTemporality"] == temporality
    assert hist[0]["Exemplars.Value"] == [7.5, 42.0, 250.0]
    assert hist[0]["Exemplars.TraceId"] == [sdk.trace_id] * 3
    assert hist[0]["Exemplars.SpanId"] == [sdk.span_id] * 3
    assert {k: exp[0][k] for k in ("Count", "Sum", "Scale", "ZeroCount", "Min", "Max", "AggregationTemporality")} == {
        "Count": 3,
        "Sum": 7.0,
        "Scale": 2,
        "ZeroCount": 0,
        "Min": 1.0,
        "Max": 4.0,
        "AggregationTemporality": temporality,
    }
    # 1, 2 and 4 at scale 2 fall in buckets -1, 3 and 7.
    assert (exp[0]["PositiveOffset"], exp[0]["PositiveBucketCounts"][:9]) == (-1, [1, 0, 0, 0, 1, 0, 0, 0, 1])
    assert not any(exp[0]["PositiveBucketCounts"][9:])
    assert {r["ServiceName"] for rows in got.values() for r in rows} == {"checkout"}
    assert {(r["ScopeName"], r["ScopeVersion"]) for rows in got.values() for r in rows} == {("shop.metrics", "0.9")}


def test_decode_otlp_request_dispatches_metrics() -> None:
    body = checkout_metrics().request.SerializeToString()

    result = decode_otlp_request("metrics", body, PROTOBUF, None, len(body))

    assert {b.table: b.num_rows for b in result.batches} == {
        "metrics_gauge": 2,
        "metrics_sum": 3,
        "metrics_histogram": 1,
        "metrics_exp_histogram": 1,
    }


# ---- protobuf --------------------------------------------------------------------------------


def test_the_lite_messages_match_the_real_field_numbers_and_types() -> None:
    real = {d.name: d for d in pb.DESCRIPTOR.message_types_by_name.values()}
    real |= {
        "Request": ExportMetricsServiceRequest.DESCRIPTOR,
        "Buckets": pb.ExponentialHistogramDataPoint.Buckets.DESCRIPTOR,
        "ValueAtQuantile": pb.SummaryDataPoint.ValueAtQuantile.DESCRIPTOR,
        "Resource": pb.ResourceMetrics.DESCRIPTOR.fields_by_name["resource"].message_type,
        "Scope": pb.ScopeMetrics.DESCRIPTOR.fields_by_name["scope"].message_type,
    }
    for name, cls in otlp_metrics._LITE.items():
        for f in cls.DESCRIPTOR.fields:
            twin = real[name].fields_by_name[f.name]
            assert (f.number, f.is_repeated) == (twin.number, twin.is_repeated), (name, f.name)
            if f.type != f.TYPE_BYTES:  # bytes: where the lite copy keeps a message raw
                assert f.type == twin.type or {f.type, twin.type} == {f.TYPE_INT32, f.TYPE_ENUM}, (name, f.name)
            assert (f.containing_oneof is None) == (twin.containing_oneof is None), (name, f.name)


def test_gauge_and_sum_values_read_as_doubles_from_as_double_or_as_int() -> None:
    req = request(
        gauge("g", number(2.5), number(-7), number(2**63 - 1), number(0.0), number(0)),
        total("s", number(1e300), number(-(2**63)), temporality=1, monotonic=False),
    )

    got = both(req)

    assert [r["Value"] for r in got["metrics_gauge"]] == [2.5, -7.0, float(2**63 - 1), 0.0, 0.0]
    assert got["metrics_sum"] == [
        row("metrics_sum", "s", Value=1e300, AggregationTemporality=1, IsMonotonic=False),
        row("metrics_sum", "s", Value=float(-(2**63)), AggregationTemporality=1, IsMonotonic=False),
    ]


def test_special_doubles_survive_both_paths() -> None:
    req = request(gauge("g", number(math.inf), number(-math.inf), number(math.nan)))

    assert [r["Value"] for r in both(req)["metrics_gauge"]] == [math.inf, -math.inf, "NaN"]


def test_a_point_with_no_recorded_value_is_kept_as_nan() -> None:
    req = request(gauge("g", number(None, flags=1)), total("s", number(None, flags=0x101)))

    got = both(req)

    assert got["metrics_gauge"] == [row("metrics_gauge", "g", Value="NaN", Flags=1)]
    assert got["metrics_sum"] == [row("metrics_sum", "s", Value="NaN", Flags=0x101)]


def test_a_point_sets_every_identity_column() -> None:
    metric = gauge(
        "temperature",
        number(21.5, attributes={"room": "kitchen", "floor": 2, "ok": True, "ratio": 0.5}, flags=0),
        description="air temperature",
        unit="Cel",
    )
    req = request(
        metric,
        resource={"service.name": "thermo", "service.version": "2.0", "host.cpus": 4},
        scope=("thermo.sensors", "1.1"),
    )

    assert both(req) == {
        "metrics_gauge": [
            row(
                "metrics_gauge",
                "temperature",
                Value=21.5,
                ServiceName="thermo",
                ServiceVersion="2.0",
                ResourceAttributes=[("service.name", "thermo"), ("service.version", "2.0"), ("host.cpus", "4")],
                ResourceAttributeTypes=[("host.cpus", "int")],
                ScopeName="thermo.sensors",
                ScopeVersion="1.1",
                MetricDescription="air temperature",
                MetricUnit="Cel",
                Attributes=[("room", "kitchen"), ("floor", "2"), ("ok", "true"), ("ratio", "0.5")],
                AttributeTypes=[("floor", "int"), ("ok", "bool"), ("ratio", "double")],
            )
        ]
    }


def test_histogram_sum_min_and_max_are_null_when_absent_and_empty_buckets_are_kept() -> None:
    bare = pb.HistogramDataPoint(start_time_unix_nano=T0 - 10, time_unix_nano=T0, count=0)
    zeros = hist_point(sum=0.0, min=0.0, max=0.0)
    req = request(histogram("h", bare, zeros, temporality=1))

    assert both(req)["metrics_histogram"] == [
        row("metrics_histogram", "h", Count=0, Sum=None, BucketCounts=[], ExplicitBounds=[], AggregationTemporality=1)
        | {"Min": None, "Max": None},
        row("metrics_histogram", "h", Sum=0.0, Min=0.0, Max=0.0, AggregationTemporality=1),
    ]


def test_exponential_histogram_points_keep_scale_zero_bucket_and_both_sides() -> None:
    point = pb.ExponentialHistogramDataPoint(
        start_time_unix_nano=T0 - 10,
        time_unix_nano=T0,
        count=9,
        sum=-3.25,
        scale=-2,
        zero_count=2,
        zero_threshold=1e-9,
        positive=pb.ExponentialHistogramDataPoint.Buckets(offset=-3, bucket_counts=[1, 0, 2]),
        negative=pb.ExponentialHistogramDataPoint.Buckets(offset=5, bucket_counts=[4]),
        flags=1,
        min=-40.0,
        attributes=kvs({"db": "orders"}),
    )
    bare = pb.ExponentialHistogramDataPoint(time_unix_nano=T0)
    metric = pb.Metric(name="e", exponential_histogram=pb.ExponentialHistogram(data_points=[point, bare]))
    metric.exponential_histogram.aggregation_temporality = 1

    got = both(request(metric))["metrics_exp_histogram"]

    identity = identity_columns("e") | NO_EXEMPLARS
    expected_point = {
        "Count": 9,
        "Sum": -3.25,
        "Scale": -2,
        "ZeroCount": 2,
        "ZeroThreshold": 1e-9,
        "PositiveOffset": -3,
        "PositiveBucketCounts": [1, 0, 2],
        "NegativeOffset": 5,
        "NegativeBucketCounts": [4],
        "Min": -40.0,
        "Max": None,
        "AggregationTemporality": 1,
    }
    assert got == [
        identity | {"Attributes": [("db", "orders")], "Flags": 1} | expected_point,
        identity
        | {"StartTimeUnix": ts(0)}
        | {k: 0 for k in ("Count", "Scale", "ZeroCount", "PositiveOffset", "NegativeOffset")}
        | {"Sum": None, "ZeroThreshold": 0.0, "Min": None, "Max": None, "AggregationTemporality": 1}
        | {"PositiveBucketCounts": [], "NegativeBucketCounts": []},
    ]


def test_summaries_keep_their_quantiles_and_are_cumulative() -> None:
    metric = summary_metric(
        "rpc.duration",
        summary_point(T0, 10, 123.5, {0.0: 1.0, 0.5: 9.5, 0.99: 40.0, 1.0: 41.0}, method="Get"),
        summary_point(T0 + 1, 0, 0.0, {}),
    )

    got = both(request(metric))

    identity = identity_columns("rpc.duration")
    assert got == {
        "metrics_summary": [
            identity
            | {"MetricUnit": "ms", "StartTimeUnix": ts(T0 - 60_000_000_000), "Attributes": [("method", "Get")]}
            | {"Count": 10, "Sum": 123.5, "AggregationTemporality": 2}
            | {"ValueAtQuantiles.Quantile": [0.0, 0.5, 0.99, 1.0], "ValueAtQuantiles.Value": [1.0, 9.5, 40.0, 41.0]},
            identity
            | {"MetricUnit": "ms", "StartTimeUnix": ts(T0 + 1 - 60_000_000_000), "TimeUnix": ts(T0 + 1)}
            | {"Count": 0, "Sum": 0.0, "AggregationTemporality": 2}
            | {"ValueAtQuantiles.Quantile": [], "ValueAtQuantiles.Value": []},
        ]
    }


def test_exemplars_keep_their_ids_values_times_and_filtered_attributes() -> None:
    point = number(5)
    point.exemplars.add(time_unix_nano=T0 - 3, as_int=5, trace_id=TRACE, span_id=SPAN)
    point.exemplars.add(time_unix_nano=T0 - 2, as_double=0.5, filtered_attributes=kvs({"user": "u1", "n": 7}))
    point.exemplars.add(time_unix_nano=T0 - 1, trace_id=bytes(16), span_id=bytes(8))  # no value, zero ids
    plain = number(6)

    got = both(request(total("s", point, plain)))

    assert got["metrics_sum"] == [
        row(
            "metrics_sum",
            "s",
            Value=5.0,
            **{
                "Exemplars.FilteredAttributes": [[], [("user", "u1"), ("n", "7")], []],
                "Exemplars.FilteredAttributeTypes": [[], [("n", "int")], []],
                "Exemplars.TimeUnix": [ts(T0 - 3), ts(T0 - 2), ts(T0 - 1)],
                "Exemplars.Value": [5.0, 0.5, "NaN"],
                "Exemplars.SpanId": [SPAN.hex(), "", ""],
                "Exemplars.TraceId": [TRACE.hex(), "", ""],
            },
        ),
        row("metrics_sum", "s", Value=6.0),
    ]


def test_points_under_several_resources_and_scopes_get_their_own_resource_and_scope() -> None:
    req = request(gauge("a", number(1.0)), histogram("h", hist_point()), scope=("s1", "1"))
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(kvs({"service.name": "billing", "service.version": "7"}))
    rm.scope_metrics.add().scope.name = "empty"
    sm = rm.scope_metrics.add()
    sm.scope.name = "s2"
    sm.metrics.extend([gauge("b", number(2.0), number(3.0)), total("c", number(4.0))])
    billing: dict[str, object] = {"ServiceName": "billing", "ServiceVersion": "7", "ScopeName": "s2"}
    billing["ResourceAttributes"] = [("service.name", "billing"), ("service.version", "7")]

    assert both(req) == {
        "metrics_gauge": [
            row("metrics_gauge", "a", Value=1.0, ScopeName="s1", ScopeVersion="1"),
            row("metrics_gauge", "b", Value=2.0, **billing),
            row("metrics_gauge", "b", Value=3.0, **billing),
        ],
        "metrics_sum": [row("metrics_sum", "c", Value=4.0, **billing)],
        "metrics_histogram": [row("metrics_histogram", "h", ScopeName="s1", ScopeVersion="1")],
    }


def test_a_resource_without_service_name_is_unknown_service() -> None:
    got = both(request(gauge("g", number()), resource={"host.name": "a"}))

    assert got["metrics_gauge"][0]["ServiceName"] == "unknown_service"


def test_invalid_points_are_rejected_and_counted_and_the_valid_ones_kept() -> None:
    req = request(
        gauge("g", number(1.0), number(None), number(2.0, time_unix_nano=0), number(3.0, start_time_unix_nano=2**63)),
        histogram(
            "h",
            hist_point(),
            hist_point(bucket_counts=[1, 1, 1]),
            hist_point(bucket_counts=[], explicit_bounds=[1.0, 2.0]),  # no buckets: nothing to check
        ),
        total("s", number(4.0, time_unix_nano=2**64 - 1)),
    )

    result = decode_metrics_protobuf(req.SerializeToString())

    assert tables(result) == {
        "metrics_gauge": [row("metrics_gauge", "g", Value=1.0)],
        "metrics_histogram": [
            row("metrics_histogram", "h"),
            row("metrics_histogram", "h", BucketCounts=[], ExplicitBounds=[1.0, 2.0]),
        ],
    }
    assert result.rejected == 5
    assert result.error_message == (
        "rejected 5 of 8 data points: "
        'gauge point 1 of metric 0 "g" (resource 0, scope 0): as_double and as_int are both unset '
        "(a point without a value must set flags bit 0x1, no recorded value); "
        'gauge point 2 of metric 0 "g" (resource 0, scope 0): time_unix_nano is 0 '
        "(it must be the point's time, in nanoseconds since the Unix epoch); "
        'gauge point 3 of metric 0 "g" (resource 0, scope 0): start_time_unix_nano 9223372036854775808 '
        "is after the year 2262 (nanoseconds since the Unix epoch expected); "
        'histogram point 1 of metric 1 "h" (resource 0, scope 0): bucket_counts has 3 counts for 1 '
        "explicit_bounds (2 expected); "
        'sum point 0 of metric 2 "s" (resource 0, scope 0): time_unix_nano 18446744073709551615 '
        "is after the year 2262 (nanoseconds since the Unix epoch expected)"
    )


def test_more_than_five_problems_are_cut_short() -> None:
    req = request(gauge("g", *[number(None) for _ in range(7)]))

    result = decode_metrics_protobuf(req.SerializeToString())

    assert (result.batches, result.rejected) == ((), 7)
    assert result.error_message.startswith('rejected 7 of 7 data points: gauge point 0 of metric 0 "g"')
    assert result.error_message.endswith("no recorded value); and more")
    assert result.error_message.count("as_double and as_int are both unset") == 5


def test_metric_wide_problems_reject_all_its_points_and_are_told_once() -> None:
    req = request(
        total("", number(1.0), number(2.0)),
        total("unspecified", number(3.0), temporality=0),
        histogram("weird", hist_point(), temporality=7),
        pb.Metric(name="nothing", unit="1"),
        gauge("ok", number(4.0)),
        pb.Metric(name="no.points", gauge=pb.Gauge()),  # no data points: nothing to store, nothing wrong
    )

    result = decode_metrics_protobuf(req.SerializeToString())

    assert tables(result) == {"metrics_gauge": [row("metrics_gauge", "ok", Value=4.0)]}
    assert result.rejected == 5
    assert result.error_message == (
        "rejected 5 of 6 data points: "
        'metric 0 "" (resource 0, scope 0): name is empty (rejecting its 2 data points); '
        'metric 1 "unspecified" (resource 0, scope 0): sum.aggregation_temporality is 0 (unspecified), '
        "not 1 (delta) or 2 (cumulative) (rejecting its 1 data point); "
        'metric 2 "weird" (resource 0, scope 0): histogram.aggregation_temporality is 7, '
        "not 1 (delta) or 2 (cumulative) (rejecting its 1 data point); "
        'metric 3 "nothing" (resource 0, scope 0) has no data '
        "(it sets none of gauge, sum, histogram, exponential_histogram, summary)"
    )


def test_bad_summary_quantiles_and_exemplars_reject_their_point() -> None:
    bad_ids = number(1.0)
    bad_ids.exemplars.add(time_unix_nano=T0, as_double=1.0, trace_id=TRACE.hex().encode(), span_id=SPAN)
    bad_ids.exemplars.add(time_unix_nano=2**63, as_double=1.0, span_id=b"\x01" * 3)
    summary = summary_metric("q", summary_point(T0, 1, 1.0, {0.5: 1.0}), summary_point(T0, 1, 1.0, {1.5: 1.0}))
    req = request(gauge("g", bad_ids, number(2.0)), summary)

    result = decode_metrics_protobuf(req.SerializeToString())

    assert tables(result)["metrics_gauge"] == [row("metrics_gauge", "g", Value=2.0)]
    assert [r["ValueAtQuantiles.Quantile"] for r in tables(result)["metrics_summary"]] == [[0.5]]
    assert result.rejected == 2
    assert result.error_message == (
        "rejected 2 of 4 data points: "
        'gauge point 0 of metric 0 "g" (resource 0, scope 0): exemplars[0].trace_id must be 16 bytes, '
        "got 32 (hex text? send the raw bytes); "
        'gauge point 0 of metric 0 "g" (resource 0, scope 0): exemplars[1].span_id must be 8 bytes, got 3; '
        'gauge point 0 of metric 0 "g" (resource 0, scope 0): exemplars[1].time_unix_nano 9223372036854775808 '
        "is after the year 2262 (nanoseconds since the Unix epoch expected); "
        'summary point 1 of metric 1 "q" (resource 0, scope 0): quantile_values[0].quantile 1.5 '
        "is not within [0, 1]"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b"\x0a\x05\x12\x03",
            "body (4 bytes) is not a valid ExportMetricsServiceRequest: malformed protobuf (",
        ),
        (b'{"resourceMetrics": []}', "it looks like JSON: send it as application/json"),
        (b"\x1f\x8b\x08\x00", "it looks gzip-compressed: set Content-Encoding: gzip"),
    ],
)
def test_a_body_that_is_not_protobuf_raises_decode_error(body: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=re.escape(message)):
        decode_metrics_protobuf(body)


def test_a_metric_name_that_is_not_utf8_raises_decode_error() -> None:
    body = request(gauge("\x00", number())).SerializeToString().replace(b"\x0a\x01\x00", b"\x0a\x01\xff")

    message = "is not a valid ExportMetricsServiceRequest: malformed protobuf (String field had bad UTF-8)"
    with pytest.raises(DecodeError, match=re.escape(f"body ({len(body)} bytes) {message}")):
        decode_metrics_protobuf(body)


@pytest.mark.parametrize(
    "req",
    [ExportMetricsServiceRequest(), request(), request(gauge("no.points"))],
    ids=["nothing", "a scope without metrics", "a metric without points"],
)
def test_an_empty_request_gives_no_batches(req: ExportMetricsServiceRequest) -> None:
    assert decode_metrics_protobuf(req.SerializeToString()) == DecodeResult(())
    assert decode_metrics_json(metrics_json(req)) == DecodeResult(())


def test_the_synthetic_benchmark_request_decodes_the_same_by_both_paths() -> None:
    got = both(synthetic_request(points=250), numbers=True)

    assert {table: len(rows) for table, rows in got.items()} == {
        "metrics_gauge": 50,
        "metrics_sum": 100,
        "metrics_histogram": 75,
        "metrics_exp_histogram": 25,
    }


values = st.one_of(st.floats(allow_nan=False), st.integers(-(2**63), 2**63 - 1), st.none())
points = st.builds(
    lambda value, start, time, flags, attrs: number(
        value, start_time_unix_nano=start, time_unix_nano=time, flags=flags | (value is None), attributes=attrs
    ),
    values,
    st.integers(0, 2**63 - 1),
    st.integers(1, 2**63 - 1),
    st.integers(0, 2**32 - 2),
    st.lists(st.tuples(st.text(max_size=8), st.one_of(st.text(max_size=30), st.integers(-5, 5))), max_size=5),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(points, min_size=1, max_size=20), st.booleans())
def test_random_valid_number_points_round_trip_exactly_by_both_paths(pts: list[pb.NumberDataPoint], sums: bool) -> None:
    req = request(total("m", *pts) if sums else gauge("m", *pts))

    got = both(req)

    table = "metrics_sum" if sums else "metrics_gauge"
    assert got == {
        table: [
            row(
                table,
                "m",
                Value=float(getattr(p, p.WhichOneof("value"))) if p.WhichOneof("value") else "NaN",
                StartTimeUnix=ts(p.start_time_unix_nano),
                TimeUnix=ts(p.time_unix_nano),
                Flags=p.flags,
                Attributes=[(kv.key, str(getattr(kv.value, str(kv.value.WhichOneof("value"))))) for kv in p.attributes],
                AttributeTypes=[(kv.key, "int") for kv in p.attributes if kv.value.HasField("int_value")],
            )
            for p in pts
        ]
    }


# ---- OTLP/JSON -------------------------------------------------------------------------------


@pytest.mark.parametrize("numbers", [False, True], ids=["int64-as-strings", "int64-as-numbers"])
@pytest.mark.parametrize("upper", [False, True], ids=["lower-hex", "upper-hex"])
@pytest.mark.parametrize("enum_names", [False, True], ids=["int-enums", "enum-names"])
def test_the_same_sdk_request_as_json_gives_the_same_rows(numbers: bool, upper: bool, enum_names: bool) -> None:
    sdk = checkout_metrics()
    assert (b"AGGREGATION_TEMPORALITY_DELTA" in metrics_json(sdk.request, enum_names=enum_names)) == enum_names

    assert both(sdk.request, numbers=numbers, upper=upper, enum_names=enum_names) == sdk_rows(sdk)


def test_json_with_special_doubles_string_numbers_and_unknown_fields_decodes() -> None:
    doc = {
        "resourceMetrics": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
                "scopeMetrics": [
                    {
                        "scope": {"name": "s"},
                        "metrics": [
                            {
                                "name": "g",
                                "metadata": [{"key": "k", "value": {"stringValue": "v"}}],
                                "gauge": {
                                    "dataPoints": [
                                        {"timeUnixNano": T0, "asDouble": "Infinity", "futureField": 1},
                                        {"timeUnixNano": str(T0), "asDouble": "-Infinity"},
                                        {"timeUnixNano": T0, "asDouble": "NaN"},
                                        {"timeUnixNano": T0, "asDouble": "2.5"},
                                        {"timeUnixNano": T0, "asInt": 7},
                                        {"timeUnixNano": T0, "asDouble": None, "asInt": "-8", "exemplars": []},
                                    ]
                                },
                            },
                            {
                                "name": "h",
                                "histogram": {
                                    "aggregationTemporality": "AGGREGATION_TEMPORALITY_DELTA",
                                    "dataPoints": [
                                        {
                                            "timeUnixNano": T0,
                                            "count": 3,
                                            "bucketCounts": [1, "2"],
                                            "explicitBounds": ["5"],
                                            "min": "NaN",
                                        }
                                    ],
                                },
                            },
                        ],
                    }
                ],
            }
        ]
    }

    got = tables(decode_metrics_json(json.dumps(doc).encode()))

    assert [r["Value"] for r in got["metrics_gauge"]] == [math.inf, -math.inf, "NaN", 2.5, 7.0, -8.0]
    assert {r["ServiceName"] for r in got["metrics_gauge"]} == {"web"}
    (hist,) = got["metrics_histogram"]
    assert [hist[k] for k in ("Count", "Sum", "BucketCounts", "ExplicitBounds", "Min", "Max")] == [
        3,
        None,
        [1, 2],
        [5.0],
        "NaN",
        None,
    ]
    assert hist["AggregationTemporality"] == 1


def test_json_rejections_name_the_json_path() -> None:
    point = number(1.0)
    point.exemplars.add(time_unix_nano=T0, as_double=1.0, trace_id=TRACE, span_id=SPAN)
    doc = json.loads(
        metrics_json(
            request(
                gauge("g", number(1.0), point, number(None)),
                histogram("h", hist_point(), hist_point(bucket_counts=[1])),
                total("s", number(2.0), temporality=0),
                pb.Metric(name="nothing"),
            )
        )
    )
    metrics = doc["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
    metrics[0]["gauge"]["dataPoints"][1]["exemplars"][0]["traceId"] = "abc"

    result = decode_metrics_json(json.dumps(doc).encode())

    assert tables(result) == {
        "metrics_gauge": [row("metrics_gauge", "g", Value=1.0)],
        "metrics_histogram": [row("metrics_histogram", "h")],
    }
    assert result.rejected == 5
    assert result.error_message == (
        "rejected 5 of 7 data points: "
        "resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[1].exemplars[0].traceId: "
        "expected 32 hex characters, got 'abc'; "
        "resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[2]: asDouble and asInt are both unset "
        "(a point without a value must set flags bit 0x1, no recorded value); "
        "resourceMetrics[0].scopeMetrics[0].metrics[1].histogram.dataPoints[1]: bucketCounts has 1 counts "
        "for 1 explicitBounds (2 expected); "
        "resourceMetrics[0].scopeMetrics[0].metrics[2]: sum.aggregationTemporality is 0 (unspecified), "
        "not 1 (delta) or 2 (cumulative) (rejecting its 1 data point); "
        'resourceMetrics[0].scopeMetrics[0].metrics[3]: metric "nothing" has no data '
        "(it sets none of gauge, sum, histogram, exponentialHistogram, summary)"
    )


def test_json_exemplar_ids_in_base64_get_a_hint() -> None:
    point = number(1.0)
    point.exemplars.add(time_unix_nano=T0, as_double=1.0, span_id=SPAN)
    doc = json.loads(metrics_json(request(total("s", point))))
    exemplar = doc["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]["dataPoints"][0]["exemplars"][0]
    exemplar["spanId"] = "7uGbfsPBsXQ="

    result = decode_metrics_json(json.dumps(doc).encode())

    assert (result.batches, result.rejected) == ((), 1)
    assert result.error_message == (
        "rejected 1 of 1 data points: resourceMetrics[0].scopeMetrics[0].metrics[0].sum.dataPoints[0]"
        ".exemplars[0].spanId: expected 16 hex characters, got '7uGbfsPBsXQ=' (OTLP/JSON ids are hex, not base64)"
    )


def metric_doc(metric: dict[str, Any]) -> bytes:
    return json.dumps({"resourceMetrics": [{"scopeMetrics": [{"metrics": [metric]}]}]}).encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[]", "body must be a JSON object with resourceMetrics, got an array"),
        (b'{"resourceMetrics": [', "body is not valid JSON: Expecting value at line 1 column 22"),
        (b"\xff{}", "body is not UTF-8 JSON"),
        (b'{"resourceMetrics": {}}', "resourceMetrics: expected an array, got an object"),
        (
            metric_doc({"name": "g", "gauge": {"dataPoints": [{"asDouble": "lots"}]}}),
            "resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[0].asDouble: "
            'expected a number (or "NaN", "Infinity", "-Infinity"), got \'lots\'',
        ),
        (
            metric_doc({"name": "g", "gauge": {"dataPoints": [{"asDouble": 1, "asInt": "1"}]}}),
            "resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[0]: asDouble and asInt are both set, "
            "but they are a oneof",
        ),
        (
            metric_doc({"name": "g", "gauge": {}, "sum": {}}),
            "resourceMetrics[0].scopeMetrics[0].metrics[0]: gauge and sum are both set, but they are a oneof",
        ),
        (
            metric_doc({"name": "h", "histogram": {"dataPoints": [{"bucketCounts": [1, -1]}]}}),
            "resourceMetrics[0].scopeMetrics[0].metrics[0].histogram.dataPoints[0].bucketCounts[1]: -1 is out of range",
        ),
        (
            metric_doc({"name": "s", "sum": {"isMonotonic": "yes"}}),
            "resourceMetrics[0].scopeMetrics[0].metrics[0].sum.isMonotonic: expected a boolean, got a string",
        ),
        (
            metric_doc({"name": "s", "sum": {"aggregationTemporality": "SOMETIMES"}}),
            "resourceMetrics[0].scopeMetrics[0].metrics[0].sum.aggregationTemporality: expected an integer",
        ),
        (
            metric_doc({"name": "g", "gauge": {"dataPoints": [{"timeUnixNano": "12x"}]}}),
            "resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[0].timeUnixNano: expected an integer "
            "(number or decimal string), got '12x'",
        ),
        (
            metric_doc({"name": "g", "gauge": {"dataPoints": [7]}}),
            "resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[0]: expected an object, got a number",
        ),
    ],
)
def test_json_that_cannot_be_read_raises_decode_error_naming_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as err:
        decode_metrics_json(body)

    assert str(err.value).startswith(message)


@pytest.mark.parametrize(
    "body", [b"{}", b'{"resourceMetrics": []}', b'{"resourceMetrics": [{"scopeMetrics": [{"metrics": []}]}]}']
)
def test_an_empty_json_request_gives_no_batches(body: bytes) -> None:
    assert decode_metrics_json(body) == DecodeResult(())
