"""Decode OTLP metric export requests (protobuf and JSON) into rows of the five metrics tables.

Both decoders are pure: bytes in, a `DecodeResult` with one `RowBatch` per table that gets rows
(in `METRIC_TABLES` order), each with exactly its `METRIC_ARROW_SCHEMAS` schema: one row per data
point, the columns of the OpenTelemetry Collector's ClickHouse exporter (``otel_metrics_*``).
Invalid data points are dropped and counted (OTLP partial success), and so is a metric without
data, as one item; an unreadable body raises `DecodeError`.

The protobuf path parses a wire-compatible "lite" copy of the metric messages (see `_otlp_common`):
attributes and exemplars stay raw bytes, so attributes are dictionary-deduplicated and decoded once
per distinct encoding, and exemplars are parsed only when a point has some. The oneofs (a metric's
data, a number's value) and the optional histogram sum, min and max are lite oneofs, which keeps
their presence. Point fields come out column by column with `map(attrgetter(...))`.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, chain
from operator import attrgetter, methodcaller
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from vigil.collector.decode._otlp_common import (
    I64_MAX,
    NO_MAPS,
    PROTOBUF_ERRORS,
    TS,
    ZERO,
    Attr,
    ScopeRow,
    array,
    attr_maps,
    enum,
    hex_id,
    hex_ids,
    id_problem,
    integer,
    json_attrs,
    json_type,
    lite_classes,
    load_json,
    obj,
    protobuf_error,
    raw_attr_maps,
    raw_kv,
    resource_scope_columns,
    string,
)
from vigil.errors import DecodeError
from vigil.store.schema import METRIC_ARROW_SCHEMAS, METRIC_TABLES
from vigil.types import DecodeResult, RowBatch

__all__ = ["decode_metrics_json", "decode_metrics_protobuf"]

_KINDS = tuple(METRIC_TABLES)  # the Metric.data oneof's members, as the lite Metric names them
_JSON_KINDS = {"gauge": "gauge", "sum": "sum", "histogram": "histogram"}
_JSON_KINDS |= {"exponentialHistogram": "exponential_histogram", "summary": "summary"}
_TEMPORAL = ("sum", "histogram", "exponential_histogram")  # kinds that carry aggregation_temporality
_TEMPORALITY_ENUM = {"AGGREGATION_TEMPORALITY_UNSPECIFIED": 0, "AGGREGATION_TEMPORALITY_DELTA": 1}
_TEMPORALITY_ENUM["AGGREGATION_TEMPORALITY_CUMULATIVE"] = 2
_CUMULATIVE = 2  # what summaries are, per the OTLP spec
_NO_RECORDED_VALUE = 0x1  # DataPointFlags: the point stands for a gap, it has no value
_IDENTITY = METRIC_ARROW_SCHEMAS["metrics_gauge"].get_field_index("Flags") + 1  # columns all tables start with
_U64 = 2**64 - 1
_I32 = (-(2**31), 2**31 - 1)

# The lite messages: numbers as in metrics.proto, enums int32 on the wire; "|x" is oneof x.
_LITE = lite_classes(
    "metrics",
    {
        "Request": "*resource_metrics=1:ResourceMetrics",
        "ResourceMetrics": "resource=1:Resource *scope_metrics=2:ScopeMetrics",
        "Resource": "*attributes=1:bytes",
        "ScopeMetrics": "scope=1:Scope *metrics=2:Metric",
        "Scope": "name=1:string version=2:string",
        "Metric": "name=1:string description=2:string unit=3:string gauge=5:Gauge|data sum=7:Sum|data"
        " histogram=9:Histogram|data exponential_histogram=10:ExponentialHistogram|data summary=11:Summary|data",
        "Gauge": "*data_points=1:NumberDataPoint",
        "Sum": "*data_points=1:NumberDataPoint aggregation_temporality=2:int32 is_monotonic=3:bool",
        "Histogram": "*data_points=1:HistogramDataPoint aggregation_temporality=2:int32",
        "ExponentialHistogram": "*data_points=1:ExponentialHistogramDataPoint aggregation_temporality=2:int32",
        "Summary": "*data_points=1:SummaryDataPoint",
        "NumberDataPoint": "start_time_unix_nano=2:fixed64 time_unix_nano=3:fixed64 as_double=4:double|value"
        " as_int=6:sfixed64|value *exemplars=5:bytes *attributes=7:bytes flags=8:uint32",
        "HistogramDataPoint": "start_time_unix_nano=2:fixed64 time_unix_nano=3:fixed64 count=4:fixed64"
        " sum=5:double|_sum *bucket_counts=6:fixed64 *explicit_bounds=7:double *exemplars=8:bytes"
        " *attributes=9:bytes flags=10:uint32 min=11:double|_min max=12:double|_max",
        "ExponentialHistogramDataPoint": "*attributes=1:bytes start_time_unix_nano=2:fixed64"
        " time_unix_nano=3:fixed64 count=4:fixed64 sum=5:double|_sum scale=6:sint32 zero_count=7:fixed64"
        " positive=8:Buckets negative=9:Buckets flags=10:uint32 *exemplars=11:bytes min=12:double|_min"
        " max=13:double|_max zero_threshold=14:double",
        "Buckets": "offset=1:sint32 *bucket_counts=2:uint64",
        "SummaryDataPoint": "start_time_unix_nano=2:fixed64 time_unix_nano=3:fixed64 count=4:fixed64"
        " sum=5:double *quantile_values=6:ValueAtQuantile *attributes=7:bytes flags=8:uint32",
        "ValueAtQuantile": "quantile=1:double value=2:double",
        "Exemplar": "time_unix_nano=2:fixed64 as_double=3:double|value span_id=4:bytes trace_id=5:bytes"
        " as_int=6:sfixed64|value *filtered_attributes=7:bytes",
    },
)
_POINT_FIELDS = [attrgetter(name) for name in ("start_time_unix_nano", "time_unix_nano", "flags")]
_EXEMPLAR_FIELDS = [attrgetter(name) for name in ("time_unix_nano", "span_id", "trace_id")]
_VALUE_OF = methodcaller("WhichOneof", "value")


class _Metric(NamedTuple):
    """One metric as read: where it is, its own columns, and its points' range in its table."""

    seq: int  # its place among all the request's metrics
    ri: int
    si: int
    mi: int  # index in its scope
    name: str
    description: str
    unit: str
    kind: str  # a `METRIC_TABLES` key, or "" for a metric with no data
    temporality: int
    monotonic: bool
    first: int
    points: int


@dataclass(slots=True)
class _Points:
    """One table's points as a decoder read them, point-aligned unless noted."""

    kind: str
    n: int = 0
    metrics: list[_Metric] = field(default_factory=list)
    scopes: list[ScopeRow] = field(default_factory=list)  # every scope, with its first point here
    start: list[int] = field(default_factory=list)
    time: list[int] = field(default_factory=list)
    flags: list[int] = field(default_factory=list)
    attrs: tuple[Any, Any] = NO_MAPS
    cols: dict[str, list[Any]] = field(default_factory=dict)  # the kind's own columns, by column name
    ex_offsets: list[int] = field(default_factory=lambda: [0])  # per point, into the exemplar lists
    ex_time: list[int] = field(default_factory=list)
    ex_value: list[float] = field(default_factory=list)
    ex_span_id: list[bytes] = field(default_factory=list)
    ex_trace_id: list[bytes] = field(default_factory=list)
    ex_attrs: tuple[Any, Any] = NO_MAPS
    problems: dict[int, list[str]] = field(default_factory=dict)  # found while reading (OTLP/JSON)


@dataclass(slots=True)
class _Request:
    """What a decoder read: resources, and the points of each table."""

    json: bool
    resources: list[list[Attr]] = field(default_factory=list)
    tables: dict[str, _Points] = field(default_factory=lambda: {kind: _Points(kind) for kind in _KINDS})
    no_data: list[_Metric] = field(default_factory=list)
    seq: int = 0

    def scope(self, ri: int, si: int, name: str, version: str) -> None:
        for t in self.tables.values():
            t.scopes.append((ri, si, name, version, t.n))

    def metric(
        self,
        ri: int,
        si: int,
        mi: int,
        names: tuple[str, str, str],
        kind: str,
        temporality: int,
        monotonic: bool,
        points: int,
    ) -> None:
        t = self.tables.get(kind)
        m = _Metric(self.seq, ri, si, mi, *names, kind, temporality, monotonic, t.n if t else 0, points)
        self.seq += 1
        if t is None:
            self.no_data.append(m)
        else:
            t.metrics.append(m)
            t.n += points


# ---- checks and rejection messages -----------------------------------------------------------


def _label(json: bool, name: str) -> str:
    """A field path in the request's terms: lowerCamelCase in OTLP/JSON."""
    return re.sub(r"_([a-z])", lambda m: m[1].upper(), name) if json else name


def _metric_ok(m: _Metric) -> bool:
    return bool(m.name) and (m.kind not in _TEMPORAL or m.temporality in (1, 2))


def _metric_problems(m: _Metric, json: bool) -> list[str]:
    """Why every point of metric `m` is invalid, one phrase per problem."""
    out = []
    rejecting = f"rejecting its {m.points} data point{'s' if m.points != 1 else ''}"
    if not m.name:
        out.append(f"name is empty ({rejecting})")
    if m.kind in _TEMPORAL and m.temporality not in (1, 2):
        label = _label(json, f"{m.kind}.aggregation_temporality")
        what = "0 (unspecified)" if m.temporality == 0 else str(m.temporality)
        out.append(f"{label} is {what}, not 1 (delta) or 2 (cumulative) ({rejecting})")
    return out


def _point_problems(t: _Points, i: int, json: bool) -> list[str]:
    """Why point `i` of table `t` is invalid, one phrase per problem (the rules of `_bad_points`)."""
    out: list[str] = []
    time, start = t.time[i], t.start[i]
    if time == 0:
        out.append(
            f"{_label(json, 'time_unix_nano')} is 0 (it must be the point's time, in nanoseconds since the Unix epoch)"
        )
    for label, v in (("start_time_unix_nano", start), ("time_unix_nano", time)):
        if v > I64_MAX:
            out.append(f"{_label(json, label)} {v} is after the year 2262 (nanoseconds since the Unix epoch expected)")
    if t.kind in ("gauge", "sum") and t.cols["Value"][i] is None and not t.flags[i] & _NO_RECORDED_VALUE:
        a, b = _label(json, "as_double"), _label(json, "as_int")
        out.append(f"{a} and {b} are both unset (a point without a value must set flags bit 0x1, no recorded value)")
    if t.kind == "histogram":
        buckets, bounds = len(t.cols["BucketCounts"][i]), len(t.cols["ExplicitBounds"][i])
        if buckets and buckets != bounds + 1:
            b, e = _label(json, "bucket_counts"), _label(json, "explicit_bounds")
            out.append(f"{b} has {buckets} counts for {bounds} {e} ({bounds + 1} expected)")
    if t.kind == "summary":  # which has no exemplars
        for j, q in enumerate(t.cols["ValueAtQuantiles.Quantile"][i]):
            if not 0 <= q <= 1:
                out.append(f"{_label(json, f'quantile_values[{j}].quantile')} {q} is not within [0, 1]")
        return out
    first = t.ex_offsets[i]
    for j in range(first, t.ex_offsets[i + 1]):
        ex = f"exemplars[{j - first}]"
        for label, raw, size in (("trace_id", t.ex_trace_id[j], 16), ("span_id", t.ex_span_id[j], 8)):
            if raw and len(raw) != size:
                out.append(id_problem(f"{ex}.{label}", raw, size))
        if t.ex_time[j] > I64_MAX:
            label = _label(json, f"{ex}.time_unix_nano")
            out.append(f"{label} {t.ex_time[j]} is after the year 2262 (nanoseconds since the Unix epoch expected)")
    return out


def _bad_points(t: _Points, json: bool) -> list[int]:
    """The invalid points of `t`, in order."""
    bad = {i for i, (s, tm) in enumerate(zip(t.start, t.time, strict=True)) if not 0 < tm <= I64_MAX or s > I64_MAX}
    if t.kind in ("gauge", "sum"):
        values = t.cols["Value"]
        bad.update(
            i for i, (v, f) in enumerate(zip(values, t.flags, strict=True)) if v is None and not f & _NO_RECORDED_VALUE
        )
    elif t.kind == "histogram":
        pairs = enumerate(zip(t.cols["BucketCounts"], t.cols["ExplicitBounds"], strict=True))
        bad.update(i for i, (buckets, bounds) in pairs if buckets and len(buckets) != len(bounds) + 1)
    elif t.kind == "summary":
        bad.update(i for i, qs in enumerate(t.cols["ValueAtQuantiles.Quantile"]) if not all(0 <= q <= 1 for q in qs))
    bad.update(
        bisect_right(t.ex_offsets, j) - 1
        for j, (et, sid, tid) in enumerate(zip(t.ex_time, t.ex_span_id, t.ex_trace_id, strict=True))
        if et > I64_MAX or (sid and len(sid) != 8) or (tid and len(tid) != 16)
    )
    for m in t.metrics:
        if not _metric_ok(m):
            bad.update(range(m.first, m.first + m.points))
    bad.update(t.problems)
    return sorted(bad)


def _where(r: _Request, m: _Metric, k: int | None) -> str:
    """Where metric `m` (k None) or its point `k` is: an OTLP/JSON path, or indexes and the name."""
    if r.json:
        path = f"resourceMetrics[{m.ri}].scopeMetrics[{m.si}].metrics[{m.mi}]"
        return path if k is None else f"{path}.{_label(True, m.kind)}.dataPoints[{k}]"
    metric = f'metric {m.mi} "{m.name}" (resource {m.ri}, scope {m.si})'
    return metric if k is None else f"{m.kind} point {k} of {metric}"


def _rejections(r: _Request, bad: dict[str, list[int]], rejected: int, total: int) -> str:
    """The partial-success message: the first few problems, in request order, each with where it is.
    A metric-wide problem is told once, not for each of its points."""
    located: list[tuple[int, int, _Metric, int]] = [(m.seq, -1, m, -1) for m in r.no_data]
    for kind, points in bad.items():
        metrics = r.tables[kind].metrics
        firsts = [m.first for m in metrics]
        for i in points:
            m = metrics[bisect_right(firsts, i) - 1]
            located.append((m.seq, i - m.first, m, i))
    located.sort(key=lambda x: x[:2])
    problems: list[str] = []
    told: set[int] = set()
    for seq, k, m, i in located:
        if not m.kind:
            data = f"it sets none of {', '.join(_label(r.json, kind) for kind in _KINDS)}"
            named = f': metric "{m.name}"' if r.json else ""  # the protobuf place names it already
            problems.append(f"{_where(r, m, None)}{named} has no data ({data})")
        elif metric_problems := _metric_problems(m, r.json):
            if seq not in told:
                told.add(seq)
                problems += [f"{_where(r, m, None)}: {p}" for p in metric_problems]
        else:
            t = r.tables[m.kind]
            problems += t.problems.get(i) or [f"{_where(r, m, k)}: {p}" for p in _point_problems(t, i, r.json)]
        if len(problems) > 5:
            break
    more = "; and more" if len(problems) > 5 else ""
    return f"rejected {rejected} of {total} data points: " + "; ".join(problems[:5]) + more


# ---- assembly --------------------------------------------------------------------------------


def _ids(ids: Sequence[bytes], size: int, all_valid: bool) -> Any:
    """Lowercase hex ids; an all-zero id reads as "" (no id), as the collector's pdata prints it."""
    zero = bytes(size)
    if zero in ids:
        ids = [b"" if v == zero else v for v in ids]
    return hex_ids(ids, size, all_valid)


def _table(r: _Request, t: _Points, all_valid: bool) -> pa.Table:
    """All of `t`'s points as rows of its table, the invalid ones too (they are filtered after)."""
    n = t.n
    schema = METRIC_ARROW_SCHEMAS[METRIC_TABLES[t.kind]]
    firsts = pa.array([m.first for m in t.metrics] + [n], pa.int32())
    metric_idx = pc.list_parent_indices(pa.ListArray.from_arrays(firsts, pa.nulls(n)))

    def per_metric(get: Callable[[_Metric], object], typ: pa.DataType) -> Any:
        return pa.array(list(map(get, t.metrics)), typ).take(metric_idx)

    columns = [
        *resource_scope_columns(r.resources, t.scopes, n),
        *(per_metric(attrgetter(name), pa.string()) for name in ("name", "description", "unit")),
        *t.attrs,
        pa.array(t.start, pa.uint64()).view(TS),  # invalid times may wrap here; they are filtered out
        pa.array(t.time, pa.uint64()).view(TS),
        pa.array(t.flags, pa.uint32()),
    ]
    exemplars = pa.array(t.ex_offsets, pa.int32()) if t.ex_offsets[-1] else pa.repeat(ZERO, n + 1)
    for f in list(schema)[_IDENTITY:]:
        if f.name == "Value":
            columns.append(pc.fill_null(pa.array(t.cols["Value"], pa.float64()), math.nan))  # no recorded value
        elif f.name == "AggregationTemporality":
            columns.append(per_metric(attrgetter("temporality"), pa.int32()))
        elif f.name == "IsMonotonic":
            columns.append(per_metric(attrgetter("monotonic"), pa.bool_()))
        elif f.name == "Exemplars.FilteredAttributes":
            columns += [pa.ListArray.from_arrays(exemplars, m) for m in t.ex_attrs]
        elif f.name == "Exemplars.TimeUnix":
            columns.append(pa.ListArray.from_arrays(exemplars, pa.array(t.ex_time, pa.uint64()).view(TS)))
        elif f.name == "Exemplars.Value":
            columns.append(pa.ListArray.from_arrays(exemplars, pa.array(t.ex_value, pa.float64())))
        elif f.name == "Exemplars.SpanId":
            columns.append(pa.ListArray.from_arrays(exemplars, _ids(t.ex_span_id, 8, all_valid)))
        elif f.name == "Exemplars.TraceId":
            columns.append(pa.ListArray.from_arrays(exemplars, _ids(t.ex_trace_id, 16, all_valid)))
        elif f.name != "Exemplars.FilteredAttributeTypes":  # made with FilteredAttributes
            columns.append(pa.array(t.cols[f.name], f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _assemble(r: _Request) -> DecodeResult:
    batches: list[RowBatch] = []
    bad: dict[str, list[int]] = {}
    for kind, t in r.tables.items():
        if not t.n:
            continue
        points = _bad_points(t, r.json)
        table = _table(r, t, not points)
        if points:
            bad[kind] = points
            dropped = set(points)
            table = table.filter(pa.array([i not in dropped for i in range(t.n)]))
        if table.num_rows:
            batches.append(RowBatch(METRIC_TABLES[kind], table))
    if not bad and not r.no_data:
        return DecodeResult(tuple(batches))
    total = len(r.no_data) + sum(t.n for t in r.tables.values())
    rejected = len(r.no_data) + sum(map(len, bad.values()))
    return DecodeResult(tuple(batches), rejected=rejected, error_message=_rejections(r, bad, rejected, total))


# ---- protobuf --------------------------------------------------------------------------------


def decode_metrics_protobuf(body: bytes) -> DecodeResult:
    """Rows of the metrics tables from a protobuf `ExportMetricsServiceRequest`."""
    try:
        return _decode_protobuf(body)
    except PROTOBUF_ERRORS as err:
        raise protobuf_error(body, "ExportMetricsServiceRequest", err) from None


def _optional(points: Sequence[Any], name: str) -> list[float | None]:
    has = methodcaller("HasField", name)
    return [v if h else None for v, h in zip(map(attrgetter(name), points), map(has, points), strict=True)]


def _number_columns(points: Sequence[Any]) -> dict[str, list[Any]]:
    which, dbl, i64 = map(_VALUE_OF, points), map(attrgetter("as_double"), points), map(attrgetter("as_int"), points)
    pairs = zip(which, dbl, i64, strict=True)
    return {"Value": [d if w == "as_double" else float(i) if w else None for w, d, i in pairs]}


def _histogram_columns(points: Sequence[Any]) -> dict[str, list[Any]]:
    return {
        "Count": list(map(attrgetter("count"), points)),
        "Sum": _optional(points, "sum"),
        "BucketCounts": [p.bucket_counts[:] for p in points],
        "ExplicitBounds": [p.explicit_bounds[:] for p in points],
        "Min": _optional(points, "min"),
        "Max": _optional(points, "max"),
    }


def _exp_histogram_columns(points: Sequence[Any]) -> dict[str, list[Any]]:
    positive, negative = (list(map(attrgetter(name), points)) for name in ("positive", "negative"))
    return {
        "Count": list(map(attrgetter("count"), points)),
        "Sum": _optional(points, "sum"),
        "Scale": list(map(attrgetter("scale"), points)),
        "ZeroCount": list(map(attrgetter("zero_count"), points)),
        "ZeroThreshold": list(map(attrgetter("zero_threshold"), points)),
        "PositiveOffset": [b.offset for b in positive],
        "PositiveBucketCounts": [b.bucket_counts[:] for b in positive],
        "NegativeOffset": [b.offset for b in negative],
        "NegativeBucketCounts": [b.bucket_counts[:] for b in negative],
        "Min": _optional(points, "min"),
        "Max": _optional(points, "max"),
    }


def _summary_columns(points: Sequence[Any]) -> dict[str, list[Any]]:
    quantiles = list(map(attrgetter("quantile_values"), points))
    return {
        "Count": list(map(attrgetter("count"), points)),
        "Sum": list(map(attrgetter("sum"), points)),
        "ValueAtQuantiles.Quantile": [[q.quantile for q in qs] for qs in quantiles],
        "ValueAtQuantiles.Value": [[q.value for q in qs] for qs in quantiles],
    }


_PB_COLUMNS: dict[str, Callable[[Sequence[Any]], dict[str, list[Any]]]] = {
    "gauge": _number_columns,
    "sum": _number_columns,
    "histogram": _histogram_columns,
    "exponential_histogram": _exp_histogram_columns,
    "summary": _summary_columns,
}


def _pb_exemplars(t: _Points, points: Sequence[Any]) -> None:
    raws = list(map(attrgetter("exemplars"), points))
    t.ex_offsets = list(accumulate(map(len, raws), initial=0))
    if not t.ex_offsets[-1]:
        return
    exs = [_LITE["Exemplar"].FromString(raw) for raw in chain.from_iterable(raws)]
    t.ex_time, t.ex_span_id, t.ex_trace_id = (list(map(get, exs)) for get in _EXEMPLAR_FIELDS)
    t.ex_value = [
        e.as_double if w == "as_double" else float(e.as_int) if w else math.nan
        for e, w in zip(exs, map(_VALUE_OF, exs), strict=True)
    ]
    t.ex_attrs = raw_attr_maps([e.filtered_attributes[:] for e in exs])


def _decode_protobuf(body: bytes) -> DecodeResult:
    req: Any = _LITE["Request"].FromString(body)
    r = _Request(json=False)
    points: dict[str, list[Any]] = {kind: [] for kind in _KINDS}
    for ri, rm in enumerate(req.resource_metrics):
        r.resources.append([raw_kv(raw) for raw in rm.resource.attributes])
        for si, sm in enumerate(rm.scope_metrics):
            r.scope(ri, si, sm.scope.name, sm.scope.version)
            for mi, m in enumerate(sm.metrics):
                kind = m.WhichOneof("data") or ""
                names = (m.name, m.description, m.unit)
                if not kind:
                    r.metric(ri, si, mi, names, "", 0, False, 0)
                    continue
                data = getattr(m, kind)
                temporality = data.aggregation_temporality if kind in _TEMPORAL else _CUMULATIVE
                monotonic = kind == "sum" and data.is_monotonic
                r.metric(ri, si, mi, names, kind, temporality, monotonic, len(data.data_points))
                points[kind] += data.data_points
    for kind, t in r.tables.items():
        pts = points[kind]
        if not pts:
            continue
        t.start, t.time, t.flags = (list(map(get, pts)) for get in _POINT_FIELDS)
        t.attrs = raw_attr_maps([p.attributes[:] for p in pts])
        t.cols = _PB_COLUMNS[kind](pts)
        if kind != "summary":
            _pb_exemplars(t, pts)
    return _assemble(r)


# ---- OTLP/JSON -------------------------------------------------------------------------------


def _double(v: object, path: str) -> float:
    """A proto3 JSON double: a number, or a string such as "NaN", "Infinity", "-Infinity" or "1.5"."""
    if isinstance(v, int | float | str) and not isinstance(v, bool):
        try:
            return float(v)
        except (ValueError, OverflowError):
            pass
    raise DecodeError(f'{path}: expected a number (or "NaN", "Infinity", "-Infinity"), got {v!r:.40}')


def _optional_double(d: dict[str, Any], key: str, path: str) -> float | None:
    v = d.get(key)
    return None if v is None else _double(v, f"{path}.{key}")


def _plain_double(d: dict[str, Any], key: str, path: str) -> float:
    """A double without presence: absent is 0."""
    v = d.get(key)
    return 0.0 if v is None else _double(v, f"{path}.{key}")


def _doubles(d: dict[str, Any], key: str, path: str) -> list[float]:
    return [_double(v, f"{path}.{key}[{i}]") for i, v in enumerate(array(d, key, path))]


def _counts(d: dict[str, Any], key: str, path: str) -> list[int]:
    """A repeated uint64: JSON numbers or decimal strings."""
    out = []
    for i, v in enumerate(array(d, key, path)):
        item = f"{key}[{i}]"
        out.append(v if type(v) is int and 0 <= v <= _U64 else integer({item: v}, item, path))
    return out


def _boolean(d: dict[str, Any], key: str, path: str) -> bool:
    v = d.get(key)
    if v is None or isinstance(v, bool):
        return bool(v)
    raise DecodeError(f"{path}.{key}: expected a boolean, got {json_type(v)}")


def _json_value(d: dict[str, Any], path: str) -> float | None:
    """The asDouble or asInt of a point or exemplar (None when neither is set)."""
    dbl, i = d.get("asDouble"), d.get("asInt")
    if dbl is not None and i is not None:
        raise DecodeError(f"{path}: asDouble and asInt are both set, but they are a oneof")
    if i is not None:
        return float(integer(d, "asInt", path, -(2**63), I64_MAX))
    return _optional_double(d, "asDouble", path)


def _json_number(t: _Points, pt: dict[str, Any], p: str) -> None:
    t.cols["Value"].append(_json_value(pt, p))


def _json_histogram(t: _Points, pt: dict[str, Any], p: str) -> None:
    c = t.cols
    c["Count"].append(integer(pt, "count", p))
    c["Sum"].append(_optional_double(pt, "sum", p))
    c["BucketCounts"].append(_counts(pt, "bucketCounts", p))
    c["ExplicitBounds"].append(_doubles(pt, "explicitBounds", p))
    c["Min"].append(_optional_double(pt, "min", p))
    c["Max"].append(_optional_double(pt, "max", p))


def _json_exp_histogram(t: _Points, pt: dict[str, Any], p: str) -> None:
    c = t.cols
    c["Count"].append(integer(pt, "count", p))
    c["Sum"].append(_optional_double(pt, "sum", p))
    c["Scale"].append(integer(pt, "scale", p, *_I32))
    c["ZeroCount"].append(integer(pt, "zeroCount", p))
    c["ZeroThreshold"].append(_plain_double(pt, "zeroThreshold", p))
    for side, name in (("positive", "Positive"), ("negative", "Negative")):
        bp = f"{p}.{side}"
        buckets = obj(pt.get(side), bp)
        c[f"{name}Offset"].append(integer(buckets, "offset", bp, *_I32))
        c[f"{name}BucketCounts"].append(_counts(buckets, "bucketCounts", bp))
    c["Min"].append(_optional_double(pt, "min", p))
    c["Max"].append(_optional_double(pt, "max", p))


def _json_summary(t: _Points, pt: dict[str, Any], p: str) -> None:
    c = t.cols
    c["Count"].append(integer(pt, "count", p))
    c["Sum"].append(_plain_double(pt, "sum", p))
    quantiles, values = [], []
    for j, q in enumerate(array(pt, "quantileValues", p)):
        qp = f"{p}.quantileValues[{j}]"
        q = obj(q, qp)
        quantiles.append(_plain_double(q, "quantile", qp))
        values.append(_plain_double(q, "value", qp))
    c["ValueAtQuantiles.Quantile"].append(quantiles)
    c["ValueAtQuantiles.Value"].append(values)


_JSON_POINTS: dict[str, Callable[[_Points, dict[str, Any], str], None]] = {
    "gauge": _json_number,
    "sum": _json_number,
    "histogram": _json_histogram,
    "exponential_histogram": _json_exp_histogram,
    "summary": _json_summary,
}


class _JsonAttrs:
    """Attributes of points and of exemplars, gathered for `attr_maps`."""

    def __init__(self) -> None:
        self.points: list[Attr] = []
        self.point_offsets = [0]
        self.exemplars: list[Attr] = []
        self.exemplar_offsets = [0]


def _json_point(t: _Points, a: _JsonAttrs, pt: dict[str, Any], p: str) -> None:
    problems: list[str] = []
    t.start.append(integer(pt, "startTimeUnixNano", p))
    t.time.append(integer(pt, "timeUnixNano", p))
    t.flags.append(integer(pt, "flags", p, 0, 2**32 - 1))
    a.points += json_attrs(pt, p)
    a.point_offsets.append(len(a.points))
    _JSON_POINTS[t.kind](t, pt, p)
    if t.kind != "summary":
        for j, ex in enumerate(array(pt, "exemplars", p)):
            ep = f"{p}.exemplars[{j}]"
            ex = obj(ex, ep)
            t.ex_time.append(integer(ex, "timeUnixNano", ep))
            value = _json_value(ex, ep)
            t.ex_value.append(math.nan if value is None else value)
            t.ex_span_id.append(hex_id(ex, "spanId", 8, ep, problems) if ex.get("spanId") else b"")
            t.ex_trace_id.append(hex_id(ex, "traceId", 16, ep, problems) if ex.get("traceId") else b"")
            a.exemplars += json_attrs(ex, ep, "filteredAttributes")
            a.exemplar_offsets.append(len(a.exemplars))
        t.ex_offsets.append(len(t.ex_time))
    if problems:
        t.problems[len(t.time) - 1] = problems


def decode_metrics_json(body: bytes) -> DecodeResult:
    """Rows of the metrics tables from an OTLP/JSON `ExportMetricsServiceRequest` (hex ids, int enums)."""
    doc = load_json(body, "resourceMetrics")
    r = _Request(json=True)
    attrs = {kind: _JsonAttrs() for kind in _KINDS}
    for t in r.tables.values():
        t.cols = {f.name: [] for f in list(METRIC_ARROW_SCHEMAS[METRIC_TABLES[t.kind]])[_IDENTITY:]}
    for ri, rm in enumerate(array(doc, "resourceMetrics", "")):
        rp = f"resourceMetrics[{ri}]"
        rm = obj(rm, rp)
        r.resources.append(json_attrs(obj(rm.get("resource"), f"{rp}.resource"), f"{rp}.resource"))
        for si, sm in enumerate(array(rm, "scopeMetrics", rp)):
            sp = f"{rp}.scopeMetrics[{si}]"
            sm = obj(sm, sp)
            scope = obj(sm.get("scope"), f"{sp}.scope")
            r.scope(ri, si, string(scope, "name", sp), string(scope, "version", sp))
            for mi, m in enumerate(array(sm, "metrics", sp)):
                mp = f"{sp}.metrics[{mi}]"
                m = obj(m, mp)
                names = (string(m, "name", mp), string(m, "description", mp), string(m, "unit", mp))
                set_kinds = [key for key in _JSON_KINDS if m.get(key) is not None]
                if len(set_kinds) > 1:
                    raise DecodeError(f"{mp}: {' and '.join(set_kinds)} are both set, but they are a oneof")
                if not set_kinds:
                    r.metric(ri, si, mi, names, "", 0, False, 0)
                    continue
                key = set_kinds[0]
                kind, dp = _JSON_KINDS[key], f"{mp}.{key}"
                data = obj(m[key], dp)
                temporality = enum(data, "aggregationTemporality", _TEMPORALITY_ENUM, dp) if kind in _TEMPORAL else 2
                monotonic = kind == "sum" and _boolean(data, "isMonotonic", dp)
                points = array(data, "dataPoints", dp)
                t = r.tables[kind]
                r.metric(ri, si, mi, names, kind, temporality, monotonic, len(points))
                for k, pt in enumerate(points):
                    p = f"{dp}.dataPoints[{k}]"
                    _json_point(t, attrs[kind], obj(pt, p), p)
    for kind, t in r.tables.items():
        a = attrs[kind]
        t.attrs = attr_maps(a.points, a.point_offsets)
        t.ex_attrs = attr_maps(a.exemplars, a.exemplar_offsets)
    return _assemble(r)
