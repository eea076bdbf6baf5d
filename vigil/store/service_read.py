"""What the services overview and a service's page read: RED over time, per operation and per
version from the per-minute rollup (`spans_red_1m`), calls between services from
`service_edges_1m`, SLO counts from `slo_minutes`, and the newest error spans from `error_spans`.

Requests are entry spans, as everywhere in Vigil (see `SPANS_RED_1M`). A range covers the
minutes from the one holding `start_s` to the one holding `end_s`; rates are per second of the
range, as `StoreReader.services` computes them, so a service's page and the overview agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from vigil.store.read import ServiceSummary

__all__ = [
    "Dependencies",
    "Edge",
    "ErrorSpan",
    "OperationStats",
    "RedPoint",
    "ServiceSeries",
    "ServiceTrend",
    "SloWindowCounts",
    "VersionSeries",
    "VersionStats",
    "bucket_step",
    "bucket_times",
    "dependencies",
    "edges_recorded",
    "open_findings_by_service",
    "operations",
    "recent_errors",
    "red_series",
    "service_known",
    "service_series",
    "service_summary",
    "service_trends",
    "slo_window_counts",
    "version_series",
    "versions",
]

Query = Callable[..., list[dict[str, Any]]]

_IN_RANGE = """Minute >= toStartOfMinute(toDateTime({start:Int64}, 'UTC'))
              AND Minute <= toDateTime({end:Int64}, 'UTC')"""


@dataclass(frozen=True, slots=True)
class ServiceTrend:
    """One service's requests and error rate per bucket (None: no requests in the bucket)."""

    service: str
    requests: list[int]
    error_rates: list[float | None]
    errors: int


@dataclass(frozen=True, slots=True)
class RedPoint:
    time_s: float  # the bucket's start
    requests: int
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True, slots=True)
class OperationStats:
    operation: str
    requests: int
    rate_per_s: float
    error_rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True, slots=True)
class VersionStats:
    version: str  # "" when the service sets no service.version
    requests: int
    share: float  # of the service's requests in the range
    error_rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    first_seen_s: float  # start of the first minute in the range with requests of this version
    last_seen_s: float  # start of the last such minute


@dataclass(frozen=True, slots=True)
class VersionSeries:
    version: str
    requests: list[int]  # per bucket of `bucket_times`


@dataclass(frozen=True, slots=True)
class ErrorSpan:
    trace_id: str
    span_id: str
    operation: str
    version: str
    start_time_unix_nano: int
    duration_ns: int
    status_message: str


@dataclass(frozen=True, slots=True)
class Edge:
    """Calls between the page's service and `service`, one direction."""

    service: str
    calls: int
    errors: int
    error_rate: float
    mean_ms: float


@dataclass(frozen=True, slots=True)
class Dependencies:
    callers: list[Edge]  # services calling this one
    callees: list[Edge]  # services this one calls


@dataclass(frozen=True, slots=True)
class SloWindowCounts:
    """An SLO's counts summed between consecutive window edges: ``(edge start, good, total)``.

    Any window ending at `now` whose length is one of the edges sums exactly these rows, so
    burn rates and the budget come out as from the per-minute counts, at a fraction of the rows.
    """

    name: str
    counting_key: str
    rows: list[tuple[float, int, int]]


def bucket_step(start_s: float, end_s: float, buckets: int) -> int:
    """Seconds per bucket for about `buckets` buckets over the range, in whole minutes.

    >>> bucket_step(0, 3600, 120), bucket_step(0, 86400, 120), bucket_step(0, 3600, 40)
    (60, 720, 120)
    """
    return max(60, round((end_s - start_s) / buckets / 60) * 60)


def bucket_times(start_s: float, end_s: float, step: int) -> list[float]:
    """Start of each bucket from the one holding `start_s`'s minute to the one holding `end_s`.

    >>> bucket_times(130, 400, 120)
    [120.0, 240.0, 360.0]
    """
    first = math.floor(math.floor(start_s / 60) * 60 / step) * step
    last = math.floor(end_s / step) * step
    return [float(t) for t in range(first, last + 1, step)]


def _ms(ns: float) -> float:
    return round(float(ns) / 1e6, 3)


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _bounds(start_s: float, end_s: float) -> dict[str, int]:
    return {"start": int(start_s), "end": int(end_s)}


@dataclass(frozen=True, slots=True)
class ServiceSeries:
    """What a service's page shows of the service as a whole (no operation)."""

    summary: ServiceSummary | None  # None: no requests in the range
    versions: list[VersionStats]  # newest first seen first
    # With a `step` only (else empty): RED per bucket that had requests, and `bucket_times` with
    # the requests of each version per bucket, versions by name.
    red: list[RedPoint]
    version_series: tuple[list[float], list[VersionSeries]]


def service_series(
    query: Query, service: str, *, start_s: float, end_s: float, step: int | None = None
) -> ServiceSeries:
    """The service's RED over the range, in all and per `service.version`, and, with `step`
    (seconds, whole minutes), per bucket of `bucket_times` and per version and bucket.

    One read of the rollup's per-service projection (`SPANS_RED_BY_SERVICE`): a row per version
    and minute, where the rollup has one per operation too. Its quantile states are merged once
    per (version, bucket), then grouping sets merge those few per version, per bucket and in all.
    The requests per version and bucket ride along as a map on the per-version rows. (The inner
    read is the one the projection answers; ClickHouse does not answer grouping sets from one.)
    """
    # Without a step, no bucket at all: a constant one would keep the projection from answering.
    if step:
        inner_bucket = ", intDiv(toUnixTimestamp(Minute), {step:UInt32}) * {step:UInt32} AS Bucket"
        bucket, keys, sets = "Bucket", "ServiceVersion, Bucket", "(), (ServiceVersion), (Bucket)"
    else:
        inner_bucket, bucket, keys, sets = "", "toUInt32(0)", "ServiceVersion", "(), (ServiceVersion)"
    rows = query(
        f"""
        SELECT grouping({keys}) AS grouped, ServiceVersion AS version, {bucket} AS bucket,
               sum(Requests) AS requests, sum(Errors) AS errors, quantilesTDigestMerge(0.5, 0.95, 0.99)(Quantiles) AS q,
               toUnixTimestamp(min(FirstMinute)) AS first_seen, toUnixTimestamp(max(LastMinute)) AS last_seen,
               sumMap([{bucket}], [Requests]) AS per_bucket
        FROM (
            SELECT ServiceVersion{inner_bucket}, sum(Requests) AS Requests, sum(Errors) AS Errors,
                   quantilesTDigestMergeState(0.5, 0.95, 0.99)(DurationQuantiles) AS Quantiles,
                   min(Minute) AS FirstMinute, max(Minute) AS LastMinute
            FROM {{db}}.spans_red_1m
            WHERE ServiceName = {{service:String}} AND {_IN_RANGE}
            GROUP BY {keys})
        GROUP BY GROUPING SETS ({sets})""",
        service=service,
        **({"step": step} if step else {}),
        **_bounds(start_s, end_s),
    )
    # grouping() sets a bit per column aggregated away, the last column the lowest bit. With a
    # step: 3 the total, 1 per version, 2 per bucket; without: 1 the total, 0 per version.
    total_set, version_set, bucket_set = (3, 1, 2) if step else (1, 0, -1)
    by_set: dict[int, list[dict[str, Any]]] = {total_set: [], version_set: [], bucket_set: []}
    for row in rows:
        by_set[int(row["grouped"])].append(row)
    totals = [row for row in by_set[total_set] if int(row["requests"]) > 0]
    window_s = max(end_s - start_s, 1.0)
    summary = None
    if totals:
        (total,) = totals
        requests = int(total["requests"])
        summary = ServiceSummary(
            service=service,
            requests=requests,
            rate_per_s=round(requests / window_s, 3),
            error_rate=_ratio(int(total["errors"]), requests),
            p50_ms=_ms(total["q"][0]),
            p95_ms=_ms(total["q"][1]),
            p99_ms=_ms(total["q"][2]),
        )
    all_requests = sum(int(row["requests"]) for row in by_set[version_set])
    versions = [
        VersionStats(
            version=row["version"],
            requests=int(row["requests"]),
            share=_ratio(int(row["requests"]), all_requests),
            error_rate=_ratio(int(row["errors"]), int(row["requests"])),
            p50_ms=_ms(row["q"][0]),
            p95_ms=_ms(row["q"][1]),
            p99_ms=_ms(row["q"][2]),
            first_seen_s=float(row["first_seen"]),
            last_seen_s=float(row["last_seen"]),
        )
        for row in by_set[version_set]
    ]
    versions.sort(key=lambda v: (-v.first_seen_s, v.version))
    if not step:
        return ServiceSeries(summary, versions, [], ([], []))
    red = sorted(
        (
            RedPoint(
                time_s=float(row["bucket"]),
                requests=int(row["requests"]),
                errors=int(row["errors"]),
                p50_ms=_ms(row["q"][0]),
                p95_ms=_ms(row["q"][1]),
                p99_ms=_ms(row["q"][2]),
            )
            for row in by_set[bucket_set]
        ),
        key=lambda point: point.time_s,
    )
    times = bucket_times(start_s, end_s, step)
    index = {t: i for i, t in enumerate(times)}
    series = []
    for row in sorted(by_set[version_set], key=lambda row: str(row["version"])):
        counts = [0] * len(times)
        for bucket_s, requests in zip(*row["per_bucket"], strict=True):
            counts[index[float(bucket_s)]] = int(requests)
        series.append(VersionSeries(row["version"], counts))
    return ServiceSeries(summary, versions, red, (times, series))


def operations(query: Query, service: str, *, start_s: float, end_s: float) -> list[OperationStats]:
    """RED per operation (span name) of the service's requests, busiest first.

    The rollup's own rows, a t-digest merge per row: the longest of a service page's reads."""
    rows = query(
        f"""
        SELECT SpanName AS operation, sum(Requests) AS requests, sum(Errors) AS errors,
               quantilesTDigestMerge(0.5, 0.95, 0.99)(DurationQuantiles) AS q
        FROM {{db}}.spans_red_1m
        WHERE ServiceName = {{service:String}} AND {_IN_RANGE}
        GROUP BY SpanName""",
        service=service,
        **_bounds(start_s, end_s),
    )
    window_s = max(end_s - start_s, 1.0)
    found = [
        OperationStats(
            operation=row["operation"],
            requests=int(row["requests"]),
            rate_per_s=round(int(row["requests"]) / window_s, 3),
            error_rate=_ratio(int(row["errors"]), int(row["requests"])),
            p50_ms=_ms(row["q"][0]),
            p95_ms=_ms(row["q"][1]),
            p99_ms=_ms(row["q"][2]),
        )
        for row in rows
    ]
    found.sort(key=lambda o: (-o.requests, o.operation))
    return found


def service_summary(query: Query, service: str, *, start_s: float, end_s: float) -> ServiceSummary | None:
    """The service's RED over the range, as `StoreReader.services` gives it; None without requests."""
    return service_series(query, service, start_s=start_s, end_s=end_s).summary


def service_trends(query: Query, *, start_s: float, end_s: float, step: int) -> dict[str, ServiceTrend]:
    """Every service's requests and error rate per bucket of `step` seconds: the overview's sparklines."""
    times = bucket_times(start_s, end_s, step)
    index = {t: i for i, t in enumerate(times)}
    rows = query(
        f"""
        SELECT ServiceName AS service, intDiv(toUnixTimestamp(Minute), {{step:UInt32}}) * {{step:UInt32}} AS bucket,
               sum(Requests) AS requests, sum(Errors) AS errors
        FROM {{db}}.spans_red_1m
        WHERE {_IN_RANGE}
        GROUP BY service, bucket""",
        step=step,
        **_bounds(start_s, end_s),
    )
    requests: dict[str, list[int]] = {}
    errors: dict[str, list[int]] = {}
    for row in rows:
        i = index[float(row["bucket"])]
        requests.setdefault(row["service"], [0] * len(times))[i] = int(row["requests"])
        errors.setdefault(row["service"], [0] * len(times))[i] = int(row["errors"])
    return {
        service: ServiceTrend(
            service=service,
            requests=counts,
            error_rates=[None if n == 0 else e / n for n, e in zip(counts, errors[service], strict=True)],
            errors=sum(errors[service]),
        )
        for service, counts in requests.items()
    }


def red_series(query: Query, service: str, *, start_s: float, end_s: float, step: int) -> list[RedPoint]:
    """The service's requests, errors and latency quantiles per bucket that had requests."""
    return service_series(query, service, start_s=start_s, end_s=end_s, step=step).red


def versions(query: Query, service: str, *, start_s: float, end_s: float) -> list[VersionStats]:
    """RED per `service.version`, with each version's share of requests, newest first seen first."""
    return service_series(query, service, start_s=start_s, end_s=end_s).versions


def version_series(
    query: Query, service: str, *, start_s: float, end_s: float, step: int
) -> tuple[list[float], list[VersionSeries]]:
    """Requests per bucket of each version (0 where a version had none), versions by name."""
    return service_series(query, service, start_s=start_s, end_s=end_s, step=step).version_series


def recent_errors(query: Query, service: str, *, start_s: float, end_s: float, limit: int = 20) -> list[ErrorSpan]:
    """The newest `limit` error spans of the service in the range, newest first.

    Read from `error_spans`, ordered by service and time, so ClickHouse reads the range's last
    granules backwards and stops once it has `limit`. A span that a backfill wrote twice, not
    merged away yet, is one of the `limit`.
    """
    rows = query(
        """
        SELECT TraceId AS trace_id, SpanId AS span_id, SpanName AS operation, ServiceVersion AS version,
               toUnixTimestamp64Nano(Timestamp) AS start_ns, Duration AS duration_ns, StatusMessage AS message
        FROM {db}.error_spans
        WHERE ServiceName = {service:String}
          AND Timestamp >= fromUnixTimestamp64Nano({start_ns:Int64})
          AND Timestamp <= fromUnixTimestamp64Nano({end_ns:Int64})
        ORDER BY Timestamp DESC, SpanId
        LIMIT 1 BY TraceId, SpanId
        LIMIT {limit:UInt32}""",
        service=service,
        start_ns=int(start_s * 1e9),
        end_ns=int(end_s * 1e9),
        limit=limit,
    )
    return [
        ErrorSpan(
            trace_id=row["trace_id"],
            span_id=row["span_id"],
            operation=row["operation"],
            version=row["version"],
            start_time_unix_nano=int(row["start_ns"]),
            duration_ns=int(row["duration_ns"]),
            status_message=row["message"],
        )
        for row in rows
    ]


def _edge(service: str, calls: int, errors: int, duration_sum: int) -> Edge:
    return Edge(
        service=service,
        calls=calls,
        errors=errors,
        error_rate=_ratio(errors, calls),
        mean_ms=_ms(duration_sum / calls) if calls else 0.0,
    )


def dependencies(query: Query, service: str, *, start_s: float, end_s: float) -> Dependencies:
    """Services calling `service` and called by it in the range, most calls first."""
    rows = query(
        f"""
        SELECT Caller AS caller, Callee AS callee, sum(Calls) AS calls, sum(Errors) AS errors,
               sum(DurationSum) AS duration_sum
        FROM {{db}}.service_edges_1m FINAL
        WHERE (Caller = {{service:String}} OR Callee = {{service:String}}) AND {_IN_RANGE}
        GROUP BY Caller, Callee
        ORDER BY calls DESC, caller, callee""",
        service=service,
        **_bounds(start_s, end_s),
    )
    callers = [
        _edge(row["caller"], int(row["calls"]), int(row["errors"]), int(row["duration_sum"]))
        for row in rows
        if row["callee"] == service
    ]
    callees = [
        _edge(row["callee"], int(row["calls"]), int(row["errors"]), int(row["duration_sum"]))
        for row in rows
        if row["caller"] == service
    ]
    return Dependencies(callers=callers, callees=callees)


def edges_recorded(query: Query) -> bool:
    """Whether the call rollup has any row at all (it is filled by the detector thread)."""
    return bool(query("SELECT 1 AS one FROM {db}.service_edges_1m LIMIT 1"))


def service_known(query: Query, service: str) -> bool:
    """Whether the service ever sent a request that the rollup still holds."""
    rows = query("SELECT 1 AS one FROM {db}.spans_red_1m WHERE ServiceName = {service:String} LIMIT 1", service=service)
    return bool(rows)


def open_findings_by_service(query: Query) -> dict[str, int]:
    """How many findings are open per service."""
    rows = query(
        """
        SELECT ServiceName AS service, count() AS open
        FROM {db}.findings FINAL
        WHERE Status = 'open'
        GROUP BY ServiceName"""
    )
    return {row["service"]: int(row["open"]) for row in rows}


def slo_window_counts(
    query: Query, slos: Sequence[tuple[str, str, int]], *, now: float, windows_s: Sequence[int]
) -> list[SloWindowCounts]:
    """Counts of each SLO ``(name, counting key, SLO window in seconds)`` in its window before
    `now`, summed between the edges ``now - w`` for every `w` in `windows_s` (which must hold
    each SLO's window)."""
    if not slos:
        return []
    edges = sorted({int(now) - int(w) for w in windows_s})
    rows = query(
        """
        SELECT SloName AS name, CountingKey AS counting_key,
               arrayMax(arrayFilter(e -> e <= toUnixTimestamp(Minute), {edges:Array(Int64)})) AS edge,
               sum(Good) AS good, sum(Total) AS total
        FROM {db}.slo_minutes FINAL
        WHERE SloName IN {names:Array(String)}
          AND Minute >= toDateTime({first:Int64}, 'UTC') AND Minute < toDateTime({now:Int64}, 'UTC')
        GROUP BY name, counting_key, edge
        ORDER BY name, counting_key, edge""",
        edges=edges,
        names=sorted({name for name, _, _ in slos}),
        first=int(now) - max(window for _, _, window in slos),
        now=int(now),
    )
    window_start = {(name, key): int(now) - window for name, key, window in slos}
    by_slo: dict[tuple[str, str], list[tuple[float, int, int]]] = {key: [] for key in window_start}
    for row in rows:
        key = (row["name"], row["counting_key"])
        # An SLO's window edge is one of the edges, so its window is a run of whole rows.
        if key in window_start and row["edge"] >= window_start[key]:
            by_slo[key].append((float(row["edge"]), int(row["good"]), int(row["total"])))
    return [SloWindowCounts(name, key, counts) for (name, key), counts in by_slo.items()]
