"""Log patterns: how often each template was logged, per service, from the per-minute rollup.

A pattern is one (service, template id): the same template logged by two services is two
patterns, because an on-call engineer reads them per service. `first_seen` is the first time the
pattern was logged in all retained logs, not in the window asked for, so a pattern that appeared
inside the window is `new`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from clickhouse_connect.driver.client import Client

__all__ = [
    "SEVERITY_CLASSES",
    "SEVERITY_NUMBERS",
    "LogPattern",
    "LogVolume",
    "PatternBucket",
    "VolumeBucket",
    "like_contains",
    "log_patterns",
    "log_services",
    "log_volume",
    "newest_window_start",
    "pattern_buckets",
    "pattern_counts",
    "pattern_trace_ids",
    "rollup_answers",
    "severity_text",
]

Query = Callable[..., list[dict[str, Any]]]

# OTLP SeverityNumber ranges (logs.proto): 1-4 TRACE ... 21-24 FATAL.
_SEVERITY_RANGES = ((21, "FATAL"), (17, "ERROR"), (13, "WARN"), (9, "INFO"), (5, "DEBUG"), (1, "TRACE"))
# The first number of each severity range by name, least severe first (a "minimum severity").
SEVERITY_NUMBERS = {name: first for first, name in reversed(_SEVERITY_RANGES)}


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
    query: Query,
    *,
    start_s: float,
    end_s: float,
    service: str | None = None,
    limit: int = 100,
    min_severity: int | None = None,
) -> list[LogPattern]:
    """The most frequent patterns in [start, end], most frequent first; with `min_severity`, only
    patterns logged at that severity number or above in the window."""
    service_filter = "AND ServiceName = {service:String}" if service else ""
    severity_filter = "HAVING severity_max >= {min_severity:UInt8}" if min_severity is not None else ""
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
        {severity_filter}
        ORDER BY count DESC, service, template_id
        LIMIT {{limit:UInt32}}""",
        start=start_s,
        end=end_s,
        service=service or "",
        limit=limit,
        min_severity=min_severity or 0,
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


# Severity classes of the volume chart, least severe first: what the rollup can tell apart
# (its Warnings are WARN, its Errors ERROR and FATAL; "other" is everything below WARN, unset included).
SEVERITY_CLASSES = ("other", "warn", "error")
_ROLLUP_MIN_SEVERITIES = (None, 13, 17)
_IN_MINUTES = "Minute >= toStartOfMinute(toDateTime({start:Float64})) AND Minute <= toDateTime({end:Float64})"


@dataclass(frozen=True, slots=True)
class VolumeBucket:
    start_s: int
    severity_class: str  # one of SEVERITY_CLASSES
    count: int


@dataclass(frozen=True, slots=True)
class LogVolume:
    """Log lines per bucket and severity class, and which table counted them."""

    step_s: int
    source: Literal["log_patterns_1m", "logs"]
    buckets: list[VolumeBucket]


def like_contains(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, its own % _ and \\ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def rollup_answers(*, min_severity: int | None, text: str | None = None, trace_id: str | None = None) -> bool:
    """Whether log_patterns_1m counts exactly the lines a search with these filters finds (service and
    template filters it always can): no text or trace id, and a minimum of WARN, ERROR or none.

    >>> rollup_answers(min_severity=13), rollup_answers(min_severity=9), rollup_answers(min_severity=None, text="x")
    (True, False, False)
    """
    return not text and not trace_id and min_severity in _ROLLUP_MIN_SEVERITIES


def _rollup_filters(service: str | None, template_id: int | None) -> str:
    conditions = [""]
    if service:
        conditions.append("ServiceName = {service:String}")
    if template_id is not None:
        conditions.append("TemplateId = {template_id:UInt64}")
    return " AND ".join(conditions)


def newest_window_start(
    query: Query,
    *,
    start_s: float,
    end_s: float,
    lines: int,
    service: str | None = None,
    template_id: int | None = None,
    min_severity: int | None = None,
) -> float:
    """Where the newest `lines` log lines matching the filters begin, at the latest: the start of the
    last whole minute from which the rollup counts `lines` matching lines up to the minute holding
    `end_s` (uncounted, as part of it may lie after `end_s`), or `start_s` when it counts fewer.

    A search for the newest lines then reads only [this, end] of the logs table instead of the whole
    range: the logs are ordered by service first, so "newest first" cannot stop early by itself.
    Text and trace filters are not for here. A minimum below WARN counts only the WARN and above
    lines it certainly matches (the rollup does not split INFO from DEBUG), and one above ERROR
    none (it does not split ERROR from FATAL): the window is then longer, never too short.
    """
    if min_severity is None:
        counted = "sum(Count)"
    elif min_severity <= 13:
        counted = "sum(Warnings) + sum(Errors)"
    elif min_severity <= 17:
        counted = "sum(Errors)"
    else:
        return start_s
    rows = query(
        f"""
        SELECT minute FROM (
            SELECT toUnixTimestamp(Minute) AS minute,
                   sum({counted}) OVER (ORDER BY Minute DESC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS newer
            FROM {{db}}.log_patterns_1m
            WHERE Minute >= toStartOfMinute(toDateTime({{start:Float64}}))
              AND Minute < toStartOfMinute(toDateTime({{end:Float64}})) {_rollup_filters(service, template_id)}
            GROUP BY Minute)
        WHERE newer >= {{lines:UInt64}}
        ORDER BY minute DESC
        LIMIT 1""",
        start=start_s,
        end=end_s,
        lines=lines,
        service=service or "",
        template_id=template_id or 0,
    )
    return max(start_s, float(rows[0]["minute"])) if rows else start_s


def log_volume(
    query: Query,
    *,
    start_s: float,
    end_s: float,
    step_s: int,
    service: str | None = None,
    template_id: int | None = None,
    min_severity: int | None = None,
    text: str | None = None,
    trace_id: str | None = None,
) -> LogVolume:
    """Lines per `step_s` bucket (aligned to the epoch) and severity class, with the filters of a
    log search. The per-minute rollup answers when it can (service, template, and a minimum of
    WARN or ERROR), counting whole minutes; a text or trace filter, or a threshold the rollup
    cannot split (TRACE, DEBUG, INFO, FATAL), counts the log rows in [start, end] instead."""
    if not rollup_answers(min_severity=min_severity, text=text, trace_id=trace_id):
        return _raw_volume(
            query,
            start_s=start_s,
            end_s=end_s,
            step_s=step_s,
            service=service,
            template_id=template_id,
            min_severity=min_severity,
            text=text,
            trace_id=trace_id,
        )
    rows = query(
        f"""
        SELECT intDiv(toUnixTimestamp(Minute), {{step:UInt32}}) * {{step:UInt32}} AS t,
               sum(Count) - sum(Warnings) - sum(Errors) AS other, sum(Warnings) AS warn, sum(Errors) AS error
        FROM {{db}}.log_patterns_1m
        WHERE {_IN_MINUTES} {_rollup_filters(service, template_id)}
        GROUP BY t
        ORDER BY t""",
        step=step_s,
        start=start_s,
        end=end_s,
        service=service or "",
        template_id=template_id or 0,
    )
    classes = SEVERITY_CLASSES[_ROLLUP_MIN_SEVERITIES.index(min_severity) :]
    buckets = [
        VolumeBucket(int(row["t"]), name, int(row[name])) for row in rows for name in classes if int(row[name]) > 0
    ]
    return LogVolume(step_s, "log_patterns_1m", buckets)


def _raw_volume(
    query: Query,
    *,
    start_s: float,
    end_s: float,
    step_s: int,
    service: str | None,
    template_id: int | None,
    min_severity: int | None,
    text: str | None,
    trace_id: str | None,
) -> LogVolume:
    conditions = [
        "Timestamp >= fromUnixTimestamp64Nano({start:Int64})",
        "Timestamp <= fromUnixTimestamp64Nano({end:Int64})",
    ]
    if service:
        conditions.append("ServiceName = {service:String}")
    if template_id is not None:
        conditions.append("TemplateId = {template_id:UInt64}")
    if min_severity is not None:
        conditions.append("SeverityNumber >= {severity:UInt8}")
    if text:
        # The same expression as the trigram index on lower(Body), so it skips granules.
        conditions.append("lower(Body) LIKE {pattern:String}")
    if trace_id:
        conditions.append("TraceId = {trace_id:String}")
    rows = query(
        f"""
        SELECT intDiv(toUnixTimestamp(Timestamp), {{step:UInt32}}) * {{step:UInt32}} AS t,
               multiIf(SeverityNumber >= 17, 'error', SeverityNumber >= 13, 'warn', 'other') AS class,
               count() AS lines
        FROM {{db}}.logs
        WHERE {" AND ".join(conditions)}
        GROUP BY t, class
        ORDER BY t, indexOf({{classes:Array(String)}}, class)""",
        step=step_s,
        start=int(start_s * 1e9),
        end=int(end_s * 1e9),
        service=service or "",
        template_id=template_id or 0,
        severity=min_severity or 0,
        pattern=like_contains((text or "").lower()),
        trace_id=trace_id or "",
        classes=list(SEVERITY_CLASSES),
    )
    return LogVolume(step_s, "logs", [VolumeBucket(int(row["t"]), row["class"], int(row["lines"])) for row in rows])


def pattern_counts(
    query: Query, patterns: Sequence[tuple[str, int]], *, start_s: float, end_s: float, step_s: int
) -> dict[tuple[str, int], dict[int, int]]:
    """Lines per `step_s` bucket (start, unix seconds) of each (service, template id), from the rollup."""
    if not patterns:
        return {}
    rows = query(
        f"""
        SELECT ServiceName AS service, TemplateId AS template_id,
               intDiv(toUnixTimestamp(Minute), {{step:UInt32}}) * {{step:UInt32}} AS t, sum(Count) AS lines
        FROM {{db}}.log_patterns_1m
        WHERE ServiceName IN {{services:Array(String)}} AND TemplateId IN {{ids:Array(UInt64)}} AND {_IN_MINUTES}
        GROUP BY service, template_id, t""",
        step=step_s,
        services=sorted({service for service, _ in patterns}),
        ids=sorted({template_id for _, template_id in patterns}),
        start=start_s,
        end=end_s,
    )
    wanted = set(patterns)
    counts: dict[tuple[str, int], dict[int, int]] = {key: {} for key in patterns}
    for row in rows:
        key = (row["service"], int(row["template_id"]))
        if key in wanted:  # the IN lists also match other services' patterns with the same ids
            counts[key][int(row["t"])] = int(row["lines"])
    return counts


def log_services(query: Query, *, start_s: float, end_s: float, limit: int = 500) -> list[str]:
    """Services that logged in [start, end], by name (from the rollup)."""
    rows = query(
        f"""
        SELECT DISTINCT ServiceName AS service FROM {{db}}.log_patterns_1m
        WHERE {_IN_MINUTES}
        ORDER BY service
        LIMIT {{limit:UInt32}}""",
        start=start_s,
        end=end_s,
        limit=limit,
    )
    return [row["service"] for row in rows]
