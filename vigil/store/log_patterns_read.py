"""Log patterns: how often each template was logged, per service, from the per-minute rollup.

A pattern is one (service, template id): the same template logged by two services is two
patterns, because an on-call engineer reads them per service. `first_seen` is the first time the
pattern was logged in all retained logs, not in the window asked for, so a pattern that appeared
inside the window is `new`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client

__all__ = ["LogPattern", "PatternBucket", "log_patterns", "pattern_buckets", "pattern_trace_ids", "severity_text"]

Query = Callable[..., list[dict[str, Any]]]

# OTLP SeverityNumber ranges (logs.proto): 1-4 TRACE ... 21-24 FATAL.
_SEVERITY_RANGES = ((21, "FATAL"), (17, "ERROR"), (13, "WARN"), (9, "INFO"), (5, "DEBUG"), (1, "TRACE"))


def severity_text(number: int) -> str:
    """The OTLP severity name of a severity number; 0 (unset) is ``UNSPECIFIED``."""
    for first, name in _SEVERITY_RANGES:
        if number >= first:
            return name
    return "UNSPECIFIED"


@dataclass(frozen=True, slots=True)
class LogPattern:
    service: str
    template_id: int
    template: str
    count: int
    warnings: int
    errors: int
    severity_max: str
    severity_number_max: int
    first_seen: float  # unix seconds
    last_seen: float
    sample: str
    new: bool


def log_patterns(
    query: Query, *, start_s: float, end_s: float, service: str | None = None, limit: int = 100
) -> list[LogPattern]:
    """The most frequent patterns in [start, end], most frequent first."""
    service_filter = "AND ServiceName = {service:String}" if service else ""
    rows = query(
        f"""
        SELECT ServiceName AS service, TemplateId AS template_id,
               argMax(Template, LastSeen) AS template,
               sum(Count) AS count, sum(Warnings) AS warnings, sum(Errors) AS errors,
               max(SeverityMax) AS severity_max,
               toUnixTimestamp64Nano(max(LastSeen)) AS last_seen_ns,
               argMax(Sample, LastSeen) AS sample
        FROM {{db}}.log_patterns_1m
        WHERE Minute >= toStartOfMinute(toDateTime({{start:Float64}}))
          AND Minute <= toDateTime({{end:Float64}}) {service_filter}
        GROUP BY ServiceName, TemplateId
        ORDER BY count DESC, service, template_id
        LIMIT {{limit:UInt32}}""",
        start=start_s,
        end=end_s,
        service=service or "",
        limit=limit,
    )
    if not rows:
        return []
    # First seen over everything retained: one more read of the (small) rollup for these patterns.
    first_rows = query(
        """
        SELECT ServiceName AS service, TemplateId AS template_id, toUnixTimestamp64Nano(min(FirstSeen)) AS first_ns
        FROM {db}.log_patterns_1m
        WHERE TemplateId IN {ids:Array(UInt64)}
        GROUP BY ServiceName, TemplateId""",
        ids=sorted({int(row["template_id"]) for row in rows}),
    )
    first_seen = {(row["service"], int(row["template_id"])): int(row["first_ns"]) for row in first_rows}
    start_ns = int(start_s * 1e9)
    patterns = []
    for row in rows:
        first_ns = first_seen.get((row["service"], int(row["template_id"])), 0)
        patterns.append(
            LogPattern(
                service=row["service"],
                template_id=int(row["template_id"]),
                template=row["template"],
                count=int(row["count"]),
                warnings=int(row["warnings"]),
                errors=int(row["errors"]),
                severity_max=severity_text(int(row["severity_max"])),
                severity_number_max=int(row["severity_max"]),
                first_seen=first_ns / 1e9,
                last_seen=int(row["last_seen_ns"]) / 1e9,
                sample=row["sample"],
                new=first_ns >= start_ns,
            )
        )
    return patterns


@dataclass(frozen=True, slots=True)
class PatternBucket:
    """One minute of one pattern, with when the pattern and its service were first counted."""

    minute: float
    service: str
    template_id: int
    template: str
    lines: int
    errors: int
    severity_max: int
    first_minute: float  # the pattern's first minute in all retained logs
    service_first_minute: float  # the service's


def pattern_buckets(client: Client, database: str, start: float, end: float) -> list[PatternBucket]:
    """Every (minute, service, template) with lines in [start, end), oldest first."""
    sql = """
        WITH in_range AS (
            SELECT Minute, ServiceName, TemplateId, anyLast(Template) AS template,
                   sum(Count) AS lines, sum(Errors) AS errors, max(SeverityMax) AS severity_max
            FROM {db}.log_patterns_1m
            WHERE Minute >= toDateTime({start:Float64}) AND Minute < toDateTime({end:Float64})
            GROUP BY Minute, ServiceName, TemplateId
        )
        SELECT toUnixTimestamp(r.Minute), r.ServiceName, r.TemplateId, r.template, r.lines, r.errors,
               r.severity_max, toUnixTimestamp(p.first_minute), toUnixTimestamp(s.first_minute)
        FROM in_range AS r
        INNER JOIN (
            SELECT ServiceName, TemplateId, min(Minute) AS first_minute
            FROM {db}.log_patterns_1m
            WHERE (ServiceName, TemplateId) IN (SELECT ServiceName, TemplateId FROM in_range)
            GROUP BY ServiceName, TemplateId
        ) AS p ON r.ServiceName = p.ServiceName AND r.TemplateId = p.TemplateId
        INNER JOIN (
            SELECT ServiceName, min(Minute) AS first_minute FROM {db}.log_patterns_1m GROUP BY ServiceName
        ) AS s ON r.ServiceName = s.ServiceName
        ORDER BY r.Minute"""
    result = client.query(sql.replace("{db}", database), parameters={"start": start, "end": end})
    return [
        PatternBucket(
            minute=float(minute),
            service=service,
            template_id=int(template_id),
            template=template,
            lines=int(lines),
            errors=int(errors),
            severity_max=int(severity),
            first_minute=float(first),
            service_first_minute=float(service_first),
        )
        for minute, service, template_id, template, lines, errors, severity, first, service_first in result.result_rows
    ]


def pattern_trace_ids(
    client: Client, database: str, *, service: str, template_id: int | None, start: float, end: float, limit: int = 5
) -> list[str]:
    """Trace ids carried by log lines of one pattern (or, with no template, the service's errors) in [start, end)."""
    condition = "TemplateId = {template_id:UInt64}" if template_id is not None else "SeverityNumber >= 17"
    result = client.query(
        f"""
        SELECT TraceId FROM {database}.logs
        WHERE ServiceName = {{service:String}} AND {condition} AND TraceId != ''
          AND Timestamp >= fromUnixTimestamp64Milli(toInt64({{start:Float64}} * 1000))
          AND Timestamp < fromUnixTimestamp64Milli(toInt64({{end:Float64}} * 1000))
        GROUP BY TraceId ORDER BY min(Timestamp) LIMIT {{limit:UInt32}}""",
        parameters={"service": service, "template_id": template_id or 0, "start": start, "end": end, "limit": limit},
    )
    return [row[0] for row in result.result_rows]
