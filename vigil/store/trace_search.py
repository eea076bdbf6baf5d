"""Trace search: traces having a span that matches every filter, a latency histogram of the
matching spans, and the service and operation names to offer in a search form.

A filter applies to one span: ``service=shop`` with ``status=error`` finds traces in which a
span of shop failed, not traces where shop ran and something else failed. An attribute filter
matches a span attribute or a resource attribute (``host.name=web-1``), as strings: attributes
are stored as strings, so ``http.response.status_code=502`` matches the int. Looking in the
resource map too makes an attribute filter read two maps instead of one (about 1.6x the time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

__all__ = [
    "BUCKET_EDGES_MS",
    "MAX_CANDIDATE_SPANS",
    "MAX_DURATION_MS",
    "MAX_HISTOGRAM_SPANS",
    "STATUS_CODES",
    "BadTraceSearch",
    "DurationHistogram",
    "SpanNames",
    "StatusFilter",
    "TraceSearch",
    "TraceSummary",
    "duration_histogram",
    "parse_attribute",
    "search_traces",
    "span_names",
]

Query = Callable[..., list[dict[str, Any]]]
StatusFilter = Literal["error", "ok", "unset"]
STATUS_CODES: Final[dict[str, str]] = {"error": "Error", "ok": "Ok", "unset": "Unset"}

# Histogram bucket edges: 1-2-5 steps from 1 ms to 10 s, then 30 s. Bucket i holds durations in
# [edge[i-1], edge[i]); the first is everything under 1 ms, the last everything from 30 s on.
BUCKET_EDGES_MS: Final = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000)
# The histogram counts at most this many matching spans, so it stays fast on a big store: with
# a service the read is a primary-key range and rarely reaches the cap; without one a busy day
# holds tens of millions of spans (10M took 620 ms to count in full, 60 ms capped, on chDB).
# The cap is a LIMIT under the count, which stops the read early; the spans counted are then
# the first read, which favours the services sorted first (parts are ordered by service), so
# the page says when the cap was reached.
MAX_HISTOGRAM_SPANS: Final = 1_000_000
# Candidate spans read, per trace asked for, to find the newest traces (see `search_traces`).
_SPANS_PER_TRACE: Final = 20
# The most matching spans a search reads to find its traces: past it, a window whose newest spans
# all belong to a few huge traces shows those (the newest still), not older ones.
MAX_CANDIDATE_SPANS: Final = 1_000_000


class BadTraceSearch(ValueError):
    """A search parameter is malformed; names it, its value and the form expected."""

    def __init__(self, parameter: str, value: str, expected: str) -> None:
        super().__init__(f"{parameter}={value!r} is not valid: expected {expected}")
        self.parameter = parameter
        self.value = value
        self.expected = expected


def parse_attribute(text: str, parameter: str = "attr") -> tuple[str, str]:
    """``key=value`` as (key, value); the value may itself hold ``=``.

    >>> parse_attribute("http.route=/a=b")
    ('http.route', '/a=b')
    """
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise BadTraceSearch(parameter, text, "key=value, e.g. http.route=/checkout")
    return key.strip(), value


# Durations are UInt64 nanoseconds; a filter beyond a year selects nothing real and, past about
# 584 years, no longer fits the column's type.
MAX_DURATION_MS = 365 * 86400 * 1000.0


@dataclass(frozen=True, slots=True)
class TraceSearch:
    """What a matching span must satisfy; durations in ms, `min` inclusive and `max` exclusive
    (the histogram's buckets, so a bucket's bounds select exactly its spans)."""

    start_s: float
    end_s: float
    service: str | None = None
    operation: str | None = None
    min_duration_ms: float | None = None
    max_duration_ms: float | None = None
    status: StatusFilter | None = None
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class TraceSummary:
    trace_id: str
    root_service: str
    root_name: str
    start_time_unix_nano: int
    duration_ns: int
    span_count: int
    error_count: int
    services: list[str]


@dataclass(frozen=True, slots=True)
class DurationHistogram:
    """Matching spans per duration bucket; `counts[i]` is below ``edges_ms[i]`` and at or above
    the edge before it (the last, at or above the last edge). `capped` is True when the count
    reached its cap: spans past it were not counted."""

    edges_ms: tuple[int, ...]
    counts: list[int]
    capped: bool

    @property
    def total(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True, slots=True)
class SpanNames:
    services: list[str]
    operations: list[str]


def _conditions(search: TraceSearch, *, durations: bool = True) -> tuple[str, dict[str, Any]]:
    conditions = [
        "Timestamp >= fromUnixTimestamp64Nano({start:Int64})",
        "Timestamp <= fromUnixTimestamp64Nano({end:Int64})",
    ]
    params: dict[str, Any] = {"start": int(search.start_s * 1e9), "end": int(search.end_s * 1e9)}
    if search.service:
        conditions.append("ServiceName = {service:String}")
        params["service"] = search.service
    if search.operation:
        conditions.append("SpanName = {operation:String}")
        params["operation"] = search.operation
    if durations and search.min_duration_ms is not None:
        conditions.append("Duration >= {min_ns:UInt64}")
        params["min_ns"] = round(search.min_duration_ms * 1e6)
    if durations and search.max_duration_ms is not None:
        conditions.append("Duration < {max_ns:UInt64}")
        params["max_ns"] = round(search.max_duration_ms * 1e6)
    if search.status is not None:
        conditions.append("StatusCode = {status:String}")
        params["status"] = STATUS_CODES[search.status]
    for i, (key, value) in enumerate(search.attributes):
        # A missing key reads as '', so an empty value must also check the key is there.
        span, resource = f"SpanAttributes[{{ak{i}:String}}]", f"ResourceAttributes[{{ak{i}:String}}]"
        if value:
            conditions.append(f"({span} = {{av{i}:String}} OR {resource} = {{av{i}:String}})")
        else:
            conditions.append(
                f"((mapContains(SpanAttributes, {{ak{i}:String}}) AND {span} = '')"
                f" OR (mapContains(ResourceAttributes, {{ak{i}:String}}) AND {resource} = ''))"
            )
        params[f"ak{i}"] = key
        params[f"av{i}"] = value
    return " AND ".join(conditions), params


def search_traces(query: Query, search: TraceSearch, *, limit: int) -> list[TraceSummary]:
    """The `limit` traces whose latest matching span is newest, newest trace start first.

    The traces come from the newest ``limit * 20`` matching spans; when those hold fewer than
    `limit` traces but more spans match (traces with many matching spans each, as a search by a
    chatty service finds), the read widens tenfold, up to `MAX_CANDIDATE_SPANS`.
    """
    where, params = _conditions(search)
    candidates = limit * _SPANS_PER_TRACE
    while True:
        # Newest matching spans first (a top-N sort, cheap), then their traces: grouping every
        # trace id in a busy window would hash millions of ids to keep fifty.
        matches = query(
            f"""
            SELECT TraceId AS trace_id, count() AS spans
            FROM (
                SELECT TraceId, Timestamp
                FROM {{db}}.spans
                WHERE {where}
                ORDER BY Timestamp DESC
                LIMIT {{candidates:UInt32}}
            )
            GROUP BY TraceId
            ORDER BY max(Timestamp) DESC""",
            **params,
            candidates=candidates,
        )
        read_every_match = sum(int(row["spans"]) for row in matches) < candidates
        if len(matches) >= limit or read_every_match or candidates >= MAX_CANDIDATE_SPANS:
            break
        candidates = min(candidates * 10, MAX_CANDIDATE_SPANS)
    matches = matches[:limit]
    trace_ids = [row["trace_id"] for row in matches]
    if not trace_ids:
        return []
    # Where these traces lie in time (a primary-key read), so their spans are read from those days only.
    (bounds,) = query(
        """
        SELECT toUnixTimestamp64Nano(min(Start)) AS start_ns, toUnixTimestamp64Nano(max(End)) AS end_ns
        FROM {db}.spans_trace_id_ts
        WHERE TraceId IN {ids:Array(String)}""",
        ids=trace_ids,
    )
    rows = query(
        """
        SELECT TraceId AS trace_id,
               if(countIf(ParentSpanId = '') > 0, anyIf(ServiceName, ParentSpanId = ''),
                  argMin(ServiceName, Timestamp)) AS root_service,
               if(countIf(ParentSpanId = '') > 0, anyIf(SpanName, ParentSpanId = ''),
                  argMin(SpanName, Timestamp)) AS root_name,
               toUnixTimestamp64Nano(min(Timestamp)) AS start_ns,
               max(toUnixTimestamp64Nano(Timestamp) + Duration) AS end_ns,
               count() AS span_count,
               countIf(StatusCode = 'Error') AS error_count,
               arraySort(groupUniqArray(toString(ServiceName))) AS services
        FROM {db}.spans
        WHERE TraceId IN {ids:Array(String)}
          AND Timestamp >= fromUnixTimestamp64Nano({first:Int64})
          AND Timestamp <= fromUnixTimestamp64Nano({last:Int64})
        GROUP BY TraceId
        ORDER BY start_ns DESC, trace_id""",
        ids=trace_ids,
        first=int(bounds["start_ns"]),
        last=int(bounds["end_ns"]),
    )
    return [
        TraceSummary(
            trace_id=row["trace_id"],
            root_service=row["root_service"],
            root_name=row["root_name"],
            start_time_unix_nano=int(row["start_ns"]),
            duration_ns=int(row["end_ns"]) - int(row["start_ns"]),
            span_count=int(row["span_count"]),
            error_count=int(row["error_count"]),
            services=list(row["services"]),
        )
        for row in rows
    ]


def duration_histogram(query: Query, search: TraceSearch, *, cap: int = MAX_HISTOGRAM_SPANS) -> DurationHistogram:
    """Matching spans per bucket of `BUCKET_EDGES_MS`, in one query, counting at most `cap`.

    The search's own duration bounds are left out: the histogram shows where the selected
    range sits among all the durations the other filters match, so it can be widened again.
    """
    where, params = _conditions(search, durations=False)
    edges_ns = [0, *(edge * 1_000_000 for edge in BUCKET_EDGES_MS)]
    # roundDown to the edges is a vectorised binary search: 4x faster than counting edges per span.
    rows = query(
        f"""
        SELECT roundDown(Duration, {{edges:Array(UInt64)}}) AS bucket_start, count() AS spans
        FROM (
            SELECT Duration
            FROM {{db}}.spans
            WHERE {where}
            LIMIT {{cap:UInt64}}
        )
        GROUP BY bucket_start""",
        **params,
        edges=edges_ns,
        cap=cap,
    )
    counts = [0] * len(edges_ns)
    for row in rows:
        counts[edges_ns.index(int(row["bucket_start"]))] = int(row["spans"])
    return DurationHistogram(BUCKET_EDGES_MS, counts, capped=sum(counts) >= cap)


def span_names(query: Query, *, start_s: float, end_s: float, service: str | None = None) -> SpanNames:
    """Services, and operations (of `service` when given), with entry spans in [start, end].

    From the per-minute rollup, which holds entry spans only: a client or internal span's
    name is not offered, though it can still be searched for.
    """
    rows = query(
        """
        SELECT DISTINCT toString(ServiceName) AS service, toString(SpanName) AS operation
        FROM {db}.spans_red_1m
        WHERE Minute >= toStartOfMinute(toDateTime({start:Int64}, 'UTC'))
          AND Minute <= toDateTime({end:Int64}, 'UTC')
        ORDER BY service, operation
        LIMIT 5000""",
        start=int(start_s),
        end=int(end_s),
    )
    services = sorted({row["service"] for row in rows})
    operations = sorted({row["operation"] for row in rows if not service or row["service"] == service})
    return SpanNames(services, operations)
