"""Metric queries: the catalog of metrics, and series aggregated per step.

One query shape serves every point type. Points are bucketed into steps aligned to the Unix
epoch and grouped by labels; within a step, `agg` means:

- ``avg``, ``min``, ``max``, ``p50``/``p95``/``p99`` of the recorded values for gauges and sums;
  for histograms and summaries ``avg`` is the mean observation (sum over count), ``min``/``max``
  the smallest and largest observation, and the percentiles come from the buckets (linear
  within a bucket, clamped to the recorded min and max) or, for summaries, the average of the
  reported quantile.
- ``sum`` and ``rate`` (per second) of what was added: for sums the increase of the value, for
  histograms and summaries the sum of observations (``sum``) and the number of them (``rate``).

Cumulative points become increases by comparing each point with the previous one of the same
series (resource, scope and attributes): a drop in a monotonic value, or a new start time, is a
restart and counts from zero. One step before the window is read so the first point in it has
a predecessor. Delta points are increases already (StatsD aggregates are delta).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal

from vigil.store.schema import METRIC_TABLES

__all__ = [
    "AGGREGATIONS",
    "MetricInfo",
    "MetricQuery",
    "MetricQueryError",
    "Series",
    "metric_catalog",
    "metric_series",
    "metric_types",
]

Aggregation = Literal["avg", "sum", "max", "min", "p50", "p95", "p99", "rate"]
AGGREGATIONS: tuple[Aggregation, ...] = ("avg", "sum", "max", "min", "p50", "p95", "p99", "rate")
_QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
_DELTA = 1
# Results bigger than this are a mistake in the query (a step of 1s over a week), not a chart.
MAX_POINTS_PER_SERIES = 11_000
MAX_SERIES = 1_000

Query = Callable[..., list[dict[str, Any]]]


class MetricQueryError(ValueError):
    """A query that cannot be answered as asked; `parameter` names the culprit for a 422."""

    def __init__(self, parameter: str, value: object, expected: str) -> None:
        super().__init__(f"{value!r} is not valid for {parameter}: expected {expected}")
        self.parameter = parameter
        self.value = value
        self.expected = expected


@dataclass(frozen=True, slots=True)
class MetricInfo:
    name: str
    type: str
    unit: str
    description: str
    services: list[str]
    label_keys: list[str]
    points: int
    last_seen_unix_nano: int


@dataclass(frozen=True, slots=True)
class Series:
    labels: dict[str, str]
    # [Unix seconds at the start of the step, value]
    points: list[tuple[int, float]]


@dataclass(frozen=True, slots=True)
class MetricQuery:
    name: str
    metric_type: str
    agg: Aggregation
    step_s: int
    start_s: float
    end_s: float
    group_by: tuple[str, ...] = ()
    filters: tuple[tuple[str, str], ...] = ()

    @property
    def aligned_start_s(self) -> int:
        return int(self.start_s) // self.step_s * self.step_s


def metric_catalog(query: Query, *, start_s: float, end_s: float, service: str | None) -> list[MetricInfo]:
    """Every metric with points in [start, end] (whole days), with its type, unit and label keys."""
    rows = query(
        """
        SELECT MetricName, MetricType,
               anyLast(MetricUnit) AS unit, anyLast(MetricDescription) AS description,
               arraySort(groupUniqArray(toString(ServiceName))) AS services,
               arraySort(groupUniqArrayArray(AttributeKeys)) AS label_keys,
               sum(Points) AS points, toUnixTimestamp64Nano(max(LastSeen)) AS last_seen
        FROM {db}.metrics_catalog
        WHERE Day >= toDate(toDateTime({start:Int64}, 'UTC')) AND Day <= toDate(toDateTime({end:Int64}, 'UTC'))
          AND ({service:String} = '' OR ServiceName = {service:String})
        GROUP BY MetricName, MetricType
        ORDER BY MetricName, MetricType""",
        start=int(start_s),
        end=int(end_s),
        service=service or "",
    )
    return [
        MetricInfo(
            name=row["MetricName"],
            type=row["MetricType"],
            unit=row["unit"],
            description=row["description"],
            services=list(row["services"]),
            label_keys=list(row["label_keys"]),
            points=int(row["points"]),
            last_seen_unix_nano=int(row["last_seen"]),
        )
        for row in rows
    ]


def metric_types(query: Query, name: str) -> list[str]:
    """The point types `name` has been recorded as (usually one)."""
    rows = query(
        "SELECT DISTINCT toString(MetricType) AS t FROM {db}.metrics_catalog WHERE MetricName = {name:String}"
        " ORDER BY t",
        name=name,
    )
    return [row["t"] for row in rows]


# ---- SQL building blocks ----------------------------------------------------------------------

_SERIES_KEY = "cityHash64(ServiceName, ResourceAttributes, ScopeName, Attributes)"


def _label_expression(key: str, param: str) -> str:
    """The column a group-by or filter key reads: `service`, `resource.<key>`, or a point attribute."""
    if key == "service":
        return "toString(ServiceName)"
    if key.startswith("resource."):
        return f"ResourceAttributes[{{{param}:String}}]"
    return f"Attributes[{{{param}:String}}]"


def _label_params(q: MetricQuery) -> dict[str, str]:
    params = {f"g{i}": key.removeprefix("resource.") for i, key in enumerate(q.group_by)}
    params.update({f"f{i}": key.removeprefix("resource.") for i, (key, _) in enumerate(q.filters)})
    params.update({f"fv{i}": value for i, (_, value) in enumerate(q.filters)})
    return params


def _increase(column: str, dropped: str) -> str:
    """SQL for what a point added to `column` since the previous point of its series.

    `dropped` is true when the series restarted (a monotonic value went down). Reads
    `prev_<column>`, `prev_start` and `frame_rows` from the window in `_fetch`.
    """
    restarted = f"frame_rows = 1 OR prev_start != StartTimeUnix OR ({dropped})"
    # A series seen for the first time counts from zero only if it started inside the read range.
    value, previous = f"toFloat64({column})", f"toFloat64(prev_{column})"  # one type for every branch
    first = f"if(frame_rows = 1 AND StartTimeUnix < fromUnixTimestamp64Nano({{fetch_start:Int64}}), 0., {value})"
    return f"multiIf(AggregationTemporality = {_DELTA}, {value}, {restarted}, {first}, {value} - {previous})"


def _fetch(q: MetricQuery, table: str, columns: Sequence[str], lagged: Sequence[str]) -> str:
    """Points of the metric in the window (plus one step before it when increases are needed)."""
    filters = "".join(
        f" AND {_label_expression(key, f'f{i}')} = {{fv{i}:String}}" for i, (key, _) in enumerate(q.filters)
    )
    groups = "".join(f", {_label_expression(key, f'g{i}')} AS g{i}" for i, key in enumerate(q.group_by))
    where = (
        f"MetricName = {{name:String}} AND TimeUnix >= fromUnixTimestamp64Nano({{fetch_start:Int64}})"
        f" AND TimeUnix < fromUnixTimestamp64Nano({{end:Int64}}){filters}"
    )
    if not lagged:
        return f"SELECT TimeUnix{groups}, {', '.join(columns)} FROM {{db}}.{table} WHERE {where}"
    lags = "".join(f", lagInFrame({c}) OVER w AS prev_{c}" for c in lagged)
    return f"""
        SELECT TimeUnix{groups}, {", ".join(columns)}{lags},
               lagInFrame(StartTimeUnix) OVER w AS prev_start, count() OVER w AS frame_rows
        FROM {{db}}.{table}
        WHERE {where}
        WINDOW w AS (PARTITION BY {_SERIES_KEY} ORDER BY TimeUnix ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)"""


def _bucketed(q: MetricQuery, inner: str, derived: str, aggregates: str, extra_group: str = "") -> str:
    """Aggregate `inner`'s points per step and group, keeping only points inside the window."""
    group_cols = "".join(f", g{i}" for i in range(len(q.group_by)))
    return f"""
        SELECT intDiv(toUnixTimestamp(TimeUnix), {{step:UInt32}}) * {{step:UInt32}} AS t{group_cols}{extra_group},
               {aggregates}
        FROM (SELECT TimeUnix{group_cols}, {derived} FROM ({inner}))
        WHERE TimeUnix >= fromUnixTimestamp64Nano({{start:Int64}})
        GROUP BY t{group_cols}{extra_group}
        ORDER BY t"""


_VALUE_AGGREGATES = {
    "avg": "avg(v)",
    "min": "min(v)",
    "max": "max(v)",
    **{name: f"quantileExactInclusive({q})(v)" for name, q in _QUANTILES.items()},
}


def _scalar_sql(q: MetricQuery) -> str:
    """Gauges and sums: statistics of the values, or of their increases for sum and rate."""
    if q.agg in _VALUE_AGGREGATES:
        inner = _fetch(q, METRIC_TABLES[q.metric_type], ["Value"], [])
        return _bucketed(q, inner, "Value AS v", f"{_VALUE_AGGREGATES[q.agg]} AS value")
    if q.metric_type == "gauge":
        raise MetricQueryError("agg", q.agg, "avg, min, max, p50, p95 or p99 for a gauge (sum and rate need a sum)")
    inner = _fetch(q, "metrics_sum", ["Value", "AggregationTemporality", "IsMonotonic", "StartTimeUnix"], ["Value"])
    total = "sum(inc) / {step:UInt32}" if q.agg == "rate" else "sum(inc)"
    inc = _increase("Value", "IsMonotonic AND Value < prev_Value")
    return _bucketed(q, inner, f"{inc} AS inc", f"{total} AS value")


_COUNT_AGGREGATES = {
    "avg": "sum(inc_sum) / nullIf(sum(inc_count), 0)",
    "sum": "sum(inc_sum)",
    "rate": "sum(inc_count) / {step:UInt32}",
}


def _counted_sql(q: MetricQuery, table: str) -> str:
    """Histograms and summaries: count and sum of observations (avg, sum, rate)."""
    columns = ["Count", "ifNull(Sum, 0) AS sum_value", "AggregationTemporality", "StartTimeUnix"]
    inner = _fetch(q, table, columns, ["Count", "sum_value"])
    dropped = "Count < prev_Count"
    derived = f"{_increase('Count', dropped)} AS inc_count, {_increase('sum_value', dropped)} AS inc_sum"
    return _bucketed(q, inner, derived, f"{_COUNT_AGGREGATES[q.agg]} AS value")


def _extreme_sql(q: MetricQuery, table: str) -> str:
    """Histogram min/max as recorded, summary min/max as its 0 and 1 quantiles."""
    if table == "metrics_summary":
        quantile = "0" if q.agg == "min" else "1"
        column = f"arrayFirst((v, qq) -> qq = {quantile}, ValueAtQuantiles.Value, ValueAtQuantiles.Quantile)"
        exists = f"has(ValueAtQuantiles.Quantile, {quantile})"
        inner = _fetch(q, table, [f"if({exists}, {column}, NULL) AS m"], [])
    else:
        inner = _fetch(q, table, [f"{'Min' if q.agg == 'min' else 'Max'} AS m"], [])
    return _bucketed(q, inner, "m", f"{q.agg}(m) AS value")


def _summary_quantile_sql(q: MetricQuery) -> str:
    quantile = _QUANTILES[q.agg]
    column = f"arrayFirst((v, qq) -> abs(qq - {quantile}) < 1e-9, ValueAtQuantiles.Value, ValueAtQuantiles.Quantile)"
    exists = f"arrayExists(qq -> abs(qq - {quantile}) < 1e-9, ValueAtQuantiles.Quantile)"
    inner = _fetch(q, "metrics_summary", [f"if({exists}, {column}, NULL) AS m"], [])
    return _bucketed(q, inner, "m", "avg(m) AS value")


def _histogram_quantile_sql(q: MetricQuery) -> str:
    """Bucket-count increases per step, group and bucket layout; the quantile is taken in Python."""
    columns = ["Count", "BucketCounts", "ExplicitBounds", "Min", "Max", "AggregationTemporality", "StartTimeUnix"]
    inner = _fetch(q, "metrics_histogram", columns, ["Count", "BucketCounts"])
    restarted = "frame_rows = 1 OR prev_start != StartTimeUnix OR Count < prev_Count"
    restarted += " OR length(BucketCounts) != length(prev_BucketCounts)"
    first = (
        "if(frame_rows = 1 AND StartTimeUnix < fromUnixTimestamp64Nano({fetch_start:Int64}),"
        " arrayMap(c -> toUInt64(0), BucketCounts), BucketCounts)"
    )
    inc = (
        f"multiIf(AggregationTemporality = {_DELTA}, BucketCounts, {restarted}, {first},"
        " arrayMap((a, b) -> toUInt64(if(a >= b, a - b, 0)), BucketCounts, prev_BucketCounts)) AS inc_buckets,"
        " ExplicitBounds, Min, Max"
    )
    return _bucketed(
        q, inner, inc, "sumForEach(inc_buckets) AS buckets, min(Min) AS lo, max(Max) AS hi", ", ExplicitBounds"
    )


# ---- quantiles from buckets -------------------------------------------------------------------


@dataclass(slots=True)
class _Distribution:
    """Observation counts over (lower, upper] intervals, plus the recorded extremes."""

    counts: dict[tuple[float, float], float] = field(default_factory=lambda: defaultdict(float))
    lo: float = math.inf
    hi: float = -math.inf

    def add(self, lower: float, upper: float, count: float) -> None:
        if count:
            self.counts[(lower, upper)] += count

    def extremes(self, lo: float | None, hi: float | None) -> None:
        if lo is not None and math.isfinite(lo):
            self.lo = min(self.lo, lo)
        if hi is not None and math.isfinite(hi):
            self.hi = max(self.hi, hi)

    def quantile(self, quantile: float) -> float | None:
        """Linear interpolation within the bucket holding the rank, as Prometheus does, with open
        bounds replaced by the recorded min and max.

        >>> d = _Distribution()
        >>> d.add(0.0, 10.0, 4); d.add(10.0, 20.0, 4)
        >>> d.quantile(0.75)
        15.0
        """
        total = sum(self.counts.values())
        if total <= 0:
            return None
        rank = quantile * total
        seen = 0.0
        for (lower, upper), count in sorted(self.counts.items(), key=lambda item: (item[0][1], item[0][0])):
            if seen + count >= rank:
                lower = max(lower, self.lo) if math.isfinite(self.lo) else lower
                upper = min(upper, self.hi) if math.isfinite(self.hi) else upper
                if not math.isfinite(lower):
                    return upper
                if not math.isfinite(upper):
                    return lower
                return lower + (upper - lower) * (rank - seen) / count
            seen += count
        return self.hi if math.isfinite(self.hi) else None


def _explicit_intervals(bounds: Sequence[float]) -> list[tuple[float, float]]:
    edges = [-math.inf, *bounds, math.inf]
    return list(pairwise(edges))


def _exp_dict(offset: int, counts: Sequence[int]) -> dict[int, int]:
    return {offset + k: c for k, c in enumerate(counts) if c}


def _downscale(buckets: dict[int, int], by: int) -> dict[int, int]:
    if by <= 0:
        return buckets
    out: dict[int, int] = defaultdict(int)
    for index, count in buckets.items():
        out[index >> by] += count
    return out


def _exp_increase(current: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """What a cumulative exponential-histogram point added since `previous`, at the coarser scale."""
    if previous is None:
        return current
    scale = min(current["scale"], previous["scale"])
    out = dict(current, scale=scale, zero=max(current["zero"] - previous["zero"], 0))
    for side in ("pos", "neg"):
        now = _downscale(current[side], current["scale"] - scale)
        before = _downscale(previous[side], previous["scale"] - scale)
        out[side] = {i: c - before.get(i, 0) for i, c in now.items() if c > before.get(i, 0)}
    return out


def _exp_quantile_series(q: MetricQuery, query: Query) -> list[Series]:
    """Exponential histograms: increases and quantiles in Python (bucket layouts differ by point)."""
    inner = _fetch(
        q,
        "metrics_exp_histogram",
        [
            f"{_SERIES_KEY} AS series",
            *("StartTimeUnix", "AggregationTemporality", "Count", "Scale", "ZeroCount", "ZeroThreshold"),
            *("PositiveOffset", "PositiveBucketCounts", "NegativeOffset", "NegativeBucketCounts", "Min", "Max"),
        ],
        [],
    )
    rows = query(
        f"SELECT *, toUnixTimestamp64Nano(TimeUnix) AS time_ns, toUnixTimestamp64Nano(StartTimeUnix) AS start_ns"
        f" FROM ({inner}) ORDER BY series, TimeUnix",
        **_params(q),
    )
    start_ns = q.aligned_start_s * 1_000_000_000
    fetch_start_ns = (q.aligned_start_s - q.step_s) * 1_000_000_000
    distributions: dict[tuple[tuple[str, ...], int], _Distribution] = defaultdict(_Distribution)
    previous: dict[int, dict[str, Any]] = {}
    for row in rows:
        point = {
            "start": row["start_ns"],
            "count": row["Count"],
            "scale": row["Scale"],
            "zero": row["ZeroCount"],
            "pos": _exp_dict(row["PositiveOffset"], row["PositiveBucketCounts"]),
            "neg": _exp_dict(row["NegativeOffset"], row["NegativeBucketCounts"]),
        }
        if row["AggregationTemporality"] == _DELTA:
            increase = point
        else:
            before = previous.get(row["series"])
            previous[row["series"]] = point
            if before is None and point["start"] < fetch_start_ns:
                continue  # no earlier point to compare with: its increase is unknown
            restarted = before is not None and (before["start"] != point["start"] or point["count"] < before["count"])
            increase = _exp_increase(point, None if restarted else before)
        if row["time_ns"] < start_ns:
            continue
        labels = tuple(str(row[f"g{i}"]) for i in range(len(q.group_by)))
        bucket = row["time_ns"] // 1_000_000_000 // q.step_s * q.step_s
        distribution = distributions[(labels, bucket)]
        distribution.extremes(row["Min"], row["Max"])
        threshold = row["ZeroThreshold"]
        distribution.add(-threshold, threshold, increase["zero"])
        # Bucket `index` at scale s covers (base**index, base**(index+1)], base = 2**(2**-s).
        base = 2.0 ** (2.0 ** -increase["scale"])
        for sign, side in ((1.0, "pos"), (-1.0, "neg")):
            for index, count in increase[side].items():
                lower, upper = base**index, base ** (index + 1)
                distribution.add(*((lower, upper) if sign > 0 else (-upper, -lower)), count)
    return _series_from_distributions(q, distributions)


def _series_from_distributions(
    q: MetricQuery, distributions: dict[tuple[tuple[str, ...], int], _Distribution]
) -> list[Series]:
    quantile = _QUANTILES[q.agg]
    grouped: dict[tuple[str, ...], list[tuple[int, float]]] = defaultdict(list)
    for (labels, bucket), distribution in sorted(distributions.items(), key=lambda item: (item[0][0], item[0][1])):
        value = distribution.quantile(quantile)
        if value is not None:
            grouped[labels].append((bucket, value))
    return [Series(dict(zip(q.group_by, labels, strict=True)), points) for labels, points in sorted(grouped.items())]


# ---- the query --------------------------------------------------------------------------------


def _params(q: MetricQuery) -> dict[str, Any]:
    return {
        "name": q.name,
        "step": q.step_s,
        "start": q.aligned_start_s * 1_000_000_000,
        "fetch_start": (q.aligned_start_s - q.step_s) * 1_000_000_000,
        "end": int(q.end_s * 1e9),
        **_label_params(q),
    }


def _validate(q: MetricQuery) -> None:
    if q.agg not in AGGREGATIONS:
        raise MetricQueryError("agg", q.agg, ", ".join(AGGREGATIONS))
    if q.metric_type not in METRIC_TABLES:
        raise MetricQueryError("type", q.metric_type, ", ".join(METRIC_TABLES))
    if q.step_s < 1:
        raise MetricQueryError("step", q.step_s, "a duration of at least 1s")
    if (q.end_s - q.aligned_start_s) / q.step_s > MAX_POINTS_PER_SERIES:
        raise MetricQueryError(
            "step", f"{q.step_s}s", f"a step giving at most {MAX_POINTS_PER_SERIES} points over the window"
        )
    for key in (*q.group_by, *(k for k, _ in q.filters)):
        if not key or key == "resource.":
            raise MetricQueryError("group_by" if key in q.group_by else "filter", key, "a label key")


def _sql(q: MetricQuery) -> str:
    if q.metric_type in ("gauge", "sum"):
        return _scalar_sql(q)
    table = METRIC_TABLES[q.metric_type]
    if q.agg in _COUNT_AGGREGATES:
        return _counted_sql(q, table)
    if q.agg in ("min", "max"):
        return _extreme_sql(q, table)
    if q.metric_type == "summary":
        return _summary_quantile_sql(q)
    return _histogram_quantile_sql(q)


def metric_series(query: Query, q: MetricQuery) -> list[Series]:
    """The metric aggregated per step, one series per distinct group-by value."""
    _validate(q)
    if q.metric_type == "exponential_histogram" and q.agg in _QUANTILES:
        series = _exp_quantile_series(q, query)
    elif q.metric_type == "histogram" and q.agg in _QUANTILES:
        distributions: dict[tuple[tuple[str, ...], int], _Distribution] = defaultdict(_Distribution)
        for row in query(_sql(q), **_params(q)):
            labels = tuple(str(row[f"g{i}"]) for i in range(len(q.group_by)))
            distribution = distributions[(labels, int(row["t"]))]
            distribution.extremes(row["lo"], row["hi"])
            for (lower, upper), count in zip(_explicit_intervals(row["ExplicitBounds"]), row["buckets"], strict=False):
                distribution.add(lower, upper, count)
        series = _series_from_distributions(q, distributions)
    else:
        grouped: dict[tuple[str, ...], list[tuple[int, float]]] = defaultdict(list)
        for row in query(_sql(q), **_params(q)):
            value = row["value"]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            labels = tuple(str(row[f"g{i}"]) for i in range(len(q.group_by)))
            grouped[labels].append((int(row["t"]), float(value)))
        series = [Series(dict(zip(q.group_by, labels, strict=True)), pts) for labels, pts in sorted(grouped.items())]
    if len(series) > MAX_SERIES:
        raise MetricQueryError("group_by", ",".join(q.group_by), f"labels giving at most {MAX_SERIES} series")
    return series
