"""Typed read queries over Vigil's tables, for the API, dashboards and detectors.

Every query is parameterised (``{name:Type}`` bound server-side); nothing user-supplied
is formatted into SQL. Times are Unix seconds (float) in, nanoseconds out where OTLP
uses nanoseconds.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client

from vigil.store.findings import Finding, FindingQuery, FindingStore
from vigil.store.flows_read import (
    NetworkHealth,
    ThroughputSeries,
    TopTalker,
    TopTalkersBy,
    network_health,
    throughput,
    top_talkers,
)
from vigil.store.log_patterns_read import LogPattern, like_contains, log_patterns
from vigil.store.metrics_read import MetricInfo, MetricQuery, Series, metric_catalog, metric_series, metric_types
from vigil.store.trace_search import StatusFilter, TraceSearch, TraceSummary, search_traces

__all__ = [
    "LogRecord",
    "ServiceSummary",
    "SpanRecord",
    "StoreReader",
    "TraceSummary",
    "typed_attributes",
]


@dataclass(frozen=True, slots=True)
class ServiceSummary:
    service: str
    requests: int
    rate_per_s: float
    error_rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True, slots=True)
class LogRecord:
    time_unix_nano: int
    observed_time_unix_nano: int
    trace_id: str
    span_id: str
    trace_flags: int
    severity_text: str
    severity_number: int
    service: str
    body: Any
    event_name: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: dict[str, str]
    # The body's template (0 and "" for an empty body, or a row stored before templates existed).
    template_id: int
    template: str


@dataclass(frozen=True, slots=True)
class SpanRecord:
    span_id: str
    parent_span_id: str
    name: str
    service: str
    kind: str
    start_time_unix_nano: int
    duration_ns: int
    status_code: str
    status_message: str
    trace_state: str
    scope: dict[str, str]
    attributes: dict[str, Any]
    resource: dict[str, Any]
    events: list[dict[str, Any]]
    links: list[dict[str, Any]]


def _typed_value(text: str, kind: str | None) -> Any:
    if kind is None:
        return text
    if kind == "int":
        return int(text)
    if kind == "double":
        number = float(text)
        # JSON has no infinities or NaN; keep those as the text that was stored.
        return number if math.isfinite(number) else text
    if kind == "bool":
        return text == "true"
    if kind in ("array", "kvlist"):
        return json.loads(text)
    if kind == "bytes":
        # Already base64, as OTLP/JSON encodes bytes; validate rather than trust.
        base64.b64decode(text, validate=True)
        return text
    return None  # "empty": an AnyValue with nothing set


def typed_attributes(values: dict[str, str], types: dict[str, str]) -> dict[str, Any]:
    """Attributes as their OTLP types, from the stored string map and its type sidecar.

    >>> typed_attributes({"a": "1", "b": "x", "c": "true"}, {"a": "int", "c": "bool"})
    {'a': 1, 'b': 'x', 'c': True}
    """
    return {key: _typed_value(text, types.get(key)) for key, text in values.items()}


def _ns_to_ms(value: float) -> float:
    return round(float(value) / 1e6, 3)


class StoreReader:
    """Read-only queries; the API and dashboards get one through dependency injection."""

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = database

    def _query(self, sql: str, **parameters: Any) -> list[dict[str, Any]]:
        result = self.client.query(sql.replace("{db}", self.database), parameters=parameters)
        return list(result.named_results())

    def query(self, sql: str, **parameters: Any) -> list[dict[str, Any]]:
        """Rows of `sql` as dicts; ``{db}`` names Vigil's database, ``{name:Type}`` binds a parameter.

        The read modules (``vigil.store.*_read``) take this as their `Query`.
        """
        return self._query(sql, **parameters)

    def ping(self) -> bool:
        try:
            self.client.query("SELECT 1")
        except Exception:
            return False
        return True

    def services(self, *, start_s: float, end_s: float) -> list[ServiceSummary]:
        """RED per service over [start, end], from the per-minute rollup's per-service projection
        (`SPANS_RED_BY_SERVICE`: its states are merged further with the -MergeState it was built
        with, which is what lets ClickHouse answer from it)."""
        window_s = max(end_s - start_s, 1.0)
        rows = self._query(
            """
            SELECT service, requests, errors, finalizeAggregation(quantiles) AS q
            FROM (
                SELECT ServiceName AS service,
                       sum(Requests) AS requests,
                       sum(Errors) AS errors,
                       quantilesTDigestMergeState(0.5, 0.95, 0.99)(DurationQuantiles) AS quantiles
                FROM {db}.spans_red_1m
                WHERE Minute >= toStartOfMinute(toDateTime({start:Int64}, 'UTC'))
                  AND Minute <= toDateTime({end:Int64}, 'UTC')
                GROUP BY ServiceName)
            ORDER BY service""",
            start=int(start_s),
            end=int(end_s),
        )
        return [
            ServiceSummary(
                service=row["service"],
                requests=int(row["requests"]),
                rate_per_s=round(int(row["requests"]) / window_s, 3),
                error_rate=round(int(row["errors"]) / int(row["requests"]), 4) if row["requests"] else 0.0,
                p50_ms=_ns_to_ms(row["q"][0]),
                p95_ms=_ns_to_ms(row["q"][1]),
                p99_ms=_ns_to_ms(row["q"][2]),
            )
            for row in rows
        ]

    def traces(
        self,
        *,
        start_s: float,
        end_s: float,
        service: str | None = None,
        operation: str | None = None,
        min_duration_ms: float | None = None,
        max_duration_ms: float | None = None,
        status: StatusFilter | None = None,
        attributes: tuple[tuple[str, str], ...] = (),
        limit: int = 20,
    ) -> list[TraceSummary]:
        """Newest traces having at least one span that matches every filter given; see
        `vigil.store.trace_search` (durations: `min` inclusive, `max` exclusive)."""
        search = TraceSearch(
            start_s=start_s,
            end_s=end_s,
            service=service,
            operation=operation,
            min_duration_ms=min_duration_ms,
            max_duration_ms=max_duration_ms,
            status=status,
            attributes=attributes,
        )
        return search_traces(self._query, search, limit=limit)

    def logs(
        self,
        *,
        start_s: float | None,
        end_s: float | None,
        service: str | None = None,
        min_severity: int | None = None,
        text: str | None = None,
        trace_id: str | None = None,
        template_id: int | None = None,
        limit: int = 100,
    ) -> list[LogRecord]:
        """Newest log records first, matching every filter given.

        `text` matches case-insensitively anywhere in the body; `min_severity` is an OTLP
        severity number (9 INFO, 13 WARN, 17 ERROR); no window means all retained logs.
        """
        conditions = ["1"]
        params: dict[str, Any] = {"limit": limit}
        if start_s is not None:
            conditions.append("Timestamp >= fromUnixTimestamp64Nano({start:Int64})")
            params["start"] = int(start_s * 1e9)
        if end_s is not None:
            conditions.append("Timestamp <= fromUnixTimestamp64Nano({end:Int64})")
            params["end"] = int(end_s * 1e9)
        if service:
            conditions.append("ServiceName = {service:String}")
            params["service"] = service
        if min_severity is not None:
            conditions.append("SeverityNumber >= {severity:UInt8}")
            params["severity"] = min_severity
        if text:
            conditions.append("lower(Body) LIKE {pattern:String}")
            params["pattern"] = like_contains(text.lower())
        if trace_id:
            conditions.append("TraceId = {trace_id:String}")
            params["trace_id"] = trace_id
        if template_id is not None:
            conditions.append("TemplateId = {template_id:UInt64}")
            params["template_id"] = template_id
        rows = self._query(
            f"""
            SELECT toUnixTimestamp64Nano(Timestamp) AS time_ns,
                   toUnixTimestamp64Nano(ObservedTimestamp) AS observed_ns,
                   TraceId, SpanId, TraceFlags, SeverityText, SeverityNumber, ServiceName,
                   Body, BodyType, EventName, LogAttributes, LogAttributeTypes,
                   ResourceAttributes, ResourceAttributeTypes, ScopeName, ScopeVersion, TemplateId, Template
            FROM {{db}}.logs
            WHERE {" AND ".join(conditions)}
            ORDER BY Timestamp DESC
            LIMIT {{limit:UInt32}}""",
            **params,
        )
        return [
            LogRecord(
                time_unix_nano=int(row["time_ns"]),
                observed_time_unix_nano=int(row["observed_ns"]),
                trace_id=row["TraceId"],
                span_id=row["SpanId"],
                trace_flags=int(row["TraceFlags"]),
                severity_text=row["SeverityText"],
                severity_number=int(row["SeverityNumber"]),
                service=row["ServiceName"],
                body=_typed_value(row["Body"], row["BodyType"] or None),
                event_name=row["EventName"],
                attributes=typed_attributes(row["LogAttributes"], row["LogAttributeTypes"]),
                resource=typed_attributes(row["ResourceAttributes"], row["ResourceAttributeTypes"]),
                scope={"name": row["ScopeName"], "version": row["ScopeVersion"]},
                template_id=int(row["TemplateId"]),
                template=row["Template"],
            )
            for row in rows
        ]

    def log_patterns(
        self, *, start_s: float, end_s: float, service: str | None = None, limit: int = 100
    ) -> list[LogPattern]:
        """The most frequent log templates per service in [start, end]; see `log_patterns_read`."""
        return log_patterns(self._query, start_s=start_s, end_s=end_s, service=service, limit=limit)

    def metrics(self, *, start_s: float, end_s: float, service: str | None = None) -> list[MetricInfo]:
        """Metrics with points in [start, end]: name, type, unit, services and label keys."""
        return metric_catalog(self._query, start_s=start_s, end_s=end_s, service=service)

    def metric_types(self, name: str) -> list[str]:
        return metric_types(self._query, name)

    def metric_series(self, query: MetricQuery) -> list[Series]:
        """One metric aggregated per step; see `vigil.store.metrics_read` for what each `agg` means."""
        return metric_series(self._query, query)

    def top_talkers(self, *, by: TopTalkersBy, start_s: float, end_s: float, limit: int) -> list[TopTalker]:
        return top_talkers(self._query, by=by, start_s=start_s, end_s=end_s, limit=limit)

    def throughput(
        self,
        *,
        start_s: float,
        end_s: float,
        step_s: int,
        customer: str | None = None,
        interface: int | None = None,
        exporter: str | None = None,
    ) -> list[ThroughputSeries]:
        return throughput(
            self._query,
            start_s=start_s,
            end_s=end_s,
            step_s=step_s,
            customer=customer,
            interface=interface,
            exporter=exporter,
        )

    def network_health(self, *, start_s: float, end_s: float) -> NetworkHealth:
        return network_health(self._query, start_s=start_s, end_s=end_s)

    def findings(self, query: FindingQuery) -> list[Finding]:
        return FindingStore(self.client, self.database).query(query)

    def finding(self, finding_id: str) -> Finding | None:
        return FindingStore(self.client, self.database).get(finding_id)

    def trace(self, trace_id: str) -> list[SpanRecord]:
        """Every span of one trace, ordered by start time; empty when the trace is unknown."""
        bounds = self._query(
            """
            SELECT toUnixTimestamp64Nano(min(Start)) AS start_ns, toUnixTimestamp64Nano(max(End)) AS end_ns,
                   count() AS n
            FROM {db}.spans_trace_id_ts
            WHERE TraceId = {trace_id:String}""",
            trace_id=trace_id,
        )[0]
        if not bounds["n"]:
            return []
        rows = self._query(
            """
            SELECT SpanId, ParentSpanId, SpanName, ServiceName, SpanKind,
                   toUnixTimestamp64Nano(Timestamp) AS start_ns, Duration, StatusCode, StatusMessage,
                   TraceState, ScopeName, ScopeVersion,
                   SpanAttributes, SpanAttributeTypes, ResourceAttributes, ResourceAttributeTypes,
                   arrayMap(t -> toUnixTimestamp64Nano(t), Events.Timestamp) AS event_times,
                   Events.Name AS event_names, Events.Attributes AS event_attrs,
                   Events.AttributeTypes AS event_types,
                   Links.TraceId AS link_trace_ids, Links.SpanId AS link_span_ids,
                   Links.TraceState AS link_states, Links.Attributes AS link_attrs,
                   Links.AttributeTypes AS link_types
            FROM {db}.spans
            WHERE TraceId = {trace_id:String}
              AND Timestamp >= fromUnixTimestamp64Nano({start:Int64})
              AND Timestamp <= fromUnixTimestamp64Nano({end:Int64})
            ORDER BY Timestamp, SpanId""",
            trace_id=trace_id,
            start=int(bounds["start_ns"]),
            end=int(bounds["end_ns"]),
        )
        return [_span_record(row) for row in rows]


def _span_record(row: dict[str, Any]) -> SpanRecord:
    events = [
        {"time_unix_nano": int(t), "name": name, "attributes": typed_attributes(attrs, types)}
        for t, name, attrs, types in zip(
            row["event_times"], row["event_names"], row["event_attrs"], row["event_types"], strict=True
        )
    ]
    links = [
        {"trace_id": tid, "span_id": sid, "trace_state": state, "attributes": typed_attributes(attrs, types)}
        for tid, sid, state, attrs, types in zip(
            row["link_trace_ids"],
            row["link_span_ids"],
            row["link_states"],
            row["link_attrs"],
            row["link_types"],
            strict=True,
        )
    ]
    return SpanRecord(
        span_id=row["SpanId"],
        parent_span_id=row["ParentSpanId"],
        name=row["SpanName"],
        service=row["ServiceName"],
        kind=row["SpanKind"],
        start_time_unix_nano=int(row["start_ns"]),
        duration_ns=int(row["Duration"]),
        status_code=row["StatusCode"],
        status_message=row["StatusMessage"],
        trace_state=row["TraceState"],
        scope={"name": row["ScopeName"], "version": row["ScopeVersion"]},
        attributes=typed_attributes(row["SpanAttributes"], row["SpanAttributeTypes"]),
        resource=typed_attributes(row["ResourceAttributes"], row["ResourceAttributeTypes"]),
        events=events,
        links=links,
    )
