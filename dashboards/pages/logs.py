"""Log search (newest first, with a volume chart by severity) and log patterns (templates per
service, with their trend and whether they are new in the range)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from vigil.dashboards.buckets import bucket_seconds, bucket_starts
from vigil.dashboards.charts import Line, time_series
from vigil.dashboards.reads import PageReads
from vigil.dashboards.render import PageError, Range, Reader, render
from vigil.dashboards.timerange import TimeRange
from vigil.store.log_patterns_read import (
    SEVERITY_CLASSES,
    SEVERITY_NUMBERS,
    LogVolume,
    log_patterns,
    log_services,
    log_volume,
    newest_window_start,
    pattern_counts,
    severity_text,
)
from vigil.store.read import LogRecord, StoreReader

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

RESULT_LIMIT = 200
PATTERN_LIMIT = 200
_TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")
_VOLUME_NAMES = {"other": "below WARN", "warn": "WARN", "error": "ERROR and FATAL"}
_VOLUME_COLORS = {"other": "#90a4ae", "warn": "#ef6c00", "error": "#c62828"}


def severity_pill(number: int) -> str:
    """The pill class of a severity number: red for ERROR and FATAL, amber for WARN."""
    return "bad" if number >= 17 else "warning" if number >= 13 else ""


@dataclass(frozen=True, slots=True)
class LogSearch:
    """A log search as the URL gives it, checked: empty fields mean no filter."""

    text: str | None
    min_severity: int | None
    service: str | None
    trace_id: str | None
    template_id: int | None

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.text, self.min_severity, self.service, self.trace_id, self.template_id))


def _min_severity(value: str | None) -> int | None:
    if not value:
        return None
    number = SEVERITY_NUMBERS.get(value.upper())
    if number is None:
        raise PageError(
            400, "Bad severity", f"severity={value!r} is not a severity; choose one of {', '.join(SEVERITY_NUMBERS)}."
        )
    return number


def _search(
    q: str | None, severity: str | None, service: str | None, trace_id: str | None, template_id: str | None
) -> LogSearch:
    if trace_id and not _TRACE_ID.match(trace_id.strip()):
        raise PageError(
            400, "Bad trace id", f"trace_id={trace_id!r} is not a trace id; give 32 hexadecimal characters."
        )
    template: int | None = None
    if template_id:
        if not template_id.strip().isdigit() or int(template_id) >= 2**64:
            raise PageError(
                400,
                "Bad template id",
                f"template_id={template_id!r} is not a template id; use a pattern's link on the Patterns page.",
            )
        template = int(template_id)
    return LogSearch(
        text=q or None,
        min_severity=_min_severity(severity),
        service=service or None,
        trace_id=trace_id.strip().lower() if trace_id else None,
        template_id=template,
    )


def _body_text(body: Any) -> str:
    """A body as text: strings as they are, structured bodies (maps, arrays) as JSON."""
    if body is None:
        return ""
    return body if isinstance(body, str) else json.dumps(body, ensure_ascii=False, sort_keys=True)


def _volume_chart(volume: LogVolume, time_range: TimeRange) -> dict[str, Any]:
    lines = []
    for name in SEVERITY_CLASSES:
        buckets = [b for b in volume.buckets if b.severity_class == name]
        if buckets:
            lines.append(Line(_VOLUME_NAMES[name], [b.start_s for b in buckets], [b.count for b in buckets]))
    minutes = volume.step_s // 60
    spec = time_series(
        lines,
        time_range=time_range,
        title=f"Log lines per {minutes} min" if minutes > 1 else "Log lines per minute",
        y_title="lines",
        kind="bars",
    )
    # Severity colours rather than the palette's order: red must mean errors.
    names = [name for name in SEVERITY_CLASSES if any(b.severity_class == name for b in volume.buckets)]
    for trace, name in zip(spec["data"], names, strict=True):
        trace["marker"] = {"color": _VOLUME_COLORS[name]}
    return spec


def _newest_logs(reader: StoreReader, search: LogSearch, time_range: TimeRange) -> list[LogRecord]:
    """The newest `RESULT_LIMIT` + 1 matching lines (one more, to tell that the list is cut)."""
    search_start = time_range.start_s
    if not search.text and not search.trace_id:
        search_start = newest_window_start(
            reader.query,
            start_s=time_range.start_s,
            end_s=time_range.end_s,
            lines=RESULT_LIMIT + 1,
            service=search.service,
            template_id=search.template_id,
            min_severity=search.min_severity,
        )
    return reader.logs(
        start_s=search_start,
        end_s=time_range.end_s,
        service=search.service,
        min_severity=search.min_severity,
        text=search.text,
        trace_id=search.trace_id,
        template_id=search.template_id,
        limit=RESULT_LIMIT + 1,
    )


@router.get("/logs", response_class=HTMLResponse)
def logs_page(
    request: Request,
    reader: Reader,
    time_range: Range,
    q: str | None = None,
    severity: str | None = None,
    service: str | None = None,
    trace_id: str | None = None,
    template_id: str | None = None,
) -> HTMLResponse:
    search = _search(q, severity, service, trace_id, template_id)
    start_s, end_s = time_range.start_s, time_range.end_s
    with PageReads() as reads:
        found_read = reads.start(_newest_logs, reader, search, time_range)
        volume_read = reads.start(
            log_volume,
            reader.query,
            start_s=start_s,
            end_s=end_s,
            step_s=bucket_seconds(time_range),
            service=search.service,
            template_id=search.template_id,
            min_severity=search.min_severity,
            text=search.text,
            trace_id=search.trace_id,
        )
        services = reads.start(log_services, reader.query, start_s=start_s, end_s=end_s)
    found, volume = found_read.result(), volume_read.result()
    rows = [
        {
            "log": log,
            "body": _body_text(log.body),
            "severity": log.severity_text or severity_text(log.severity_number),
            "pill": severity_pill(log.severity_number),
        }
        for log in found[:RESULT_LIMIT]
    ]
    return render(
        request,
        "logs.html",
        title="Logs",
        time_range=time_range,
        rows=rows,
        limited=len(found) > RESULT_LIMIT,
        limit=RESULT_LIMIT,
        search=search,
        form={
            "q": q or "",
            "severity": (severity or "").upper(),
            "service": service or "",
            "trace_id": trace_id or "",
            "template_id": template_id or "",
        },
        severities=list(SEVERITY_NUMBERS),
        services=services.result(),
        volume=volume,
        volume_chart=_volume_chart(volume, time_range) if volume.buckets else None,
    )


@router.get("/logs/patterns", response_class=HTMLResponse)
def patterns_page(
    request: Request,
    reader: Reader,
    time_range: Range,
    service: str | None = None,
    severity: str | None = None,
) -> HTMLResponse:
    min_severity = _min_severity(severity)
    start_s, end_s = time_range.start_s, time_range.end_s
    step_s = bucket_seconds(time_range)
    with PageReads() as reads:
        services = reads.start(log_services, reader.query, start_s=start_s, end_s=end_s)
        patterns = log_patterns(
            reader.query,
            start_s=start_s,
            end_s=end_s,
            service=service or None,
            min_severity=min_severity,
            limit=PATTERN_LIMIT,
        )
        keys = [(p.service, p.template_id) for p in patterns]
        counts = pattern_counts(reader.query, keys, start_s=start_s, end_s=end_s, step_s=step_s)
    starts = bucket_starts(time_range, step_s)
    rows = [
        {
            "pattern": p,
            "trend": [counts[(p.service, p.template_id)].get(t, 0) for t in starts],
            "pill": severity_pill(p.severity_number_max),
        }
        for p in patterns
    ]
    return render(
        request,
        "log_patterns.html",
        title="Log patterns",
        time_range=time_range,
        rows=rows,
        limited=len(patterns) == PATTERN_LIMIT,
        limit=PATTERN_LIMIT,
        step_minutes=step_s // 60,
        form={"service": service or "", "severity": (severity or "").upper()},
        filtered=bool(service or min_severity),
        severities=list(SEVERITY_NUMBERS),
        services=services.result(),
    )
