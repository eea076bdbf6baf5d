"""Trace search (filters, a latency histogram, the newest matching traces) and the trace view
(waterfall with the critical path, span details, the trace's logs)."""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from vigil.dashboards.charts import bars
from vigil.dashboards.critical_path import critical_path
from vigil.dashboards.reads import PageReads
from vigil.dashboards.render import PageError, Range, Reader, link, render
from vigil.dashboards.timerange import TimeRange
from vigil.store.read import SpanRecord
from vigil.store.trace_search import (
    BUCKET_EDGES_MS,
    MAX_DURATION_MS,
    BadTraceSearch,
    DurationHistogram,
    StatusFilter,
    TraceSearch,
    duration_histogram,
    parse_attribute,
    search_traces,
    span_names,
)

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

RESULT_LIMIT = 50
LOG_LIMIT = 500
_TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")
_STATUSES: dict[str, StatusFilter | None] = {"": None, "any": None, "error": "error", "ok": "ok", "unset": "unset"}
# One colour per service of a trace, in the order services first appear in the waterfall.
_SERVICE_COLORS = ("#2f6fdf", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#8d6e63", "#546e7a", "#ad1457", "#9e9d24")
# How far around a trace the links to its services and logs look.
_AROUND_S = 300


# ---- search ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Filters:
    """The search form as the URL gave it, checked; `text` holds each field as typed."""

    search: TraceSearch
    text: dict[str, str]
    attrs: list[str]

    @property
    def narrowed(self) -> bool:
        return any(self.text.values()) or bool(self.attrs)

    def url(self, time_range: TimeRange, **changes: Any) -> str:
        """This search's URL (all filters, the range), with `changes` applied."""
        params: dict[str, Any] = {**self.text, **changes}
        base = link("/traces", time_range, **params)
        if not self.attrs:
            return base
        # Repeated parameters, which `link` (one value per name) does not write.
        return f"{base}{'&' if '?' in base else '?'}{urlencode([('attr', a) for a in self.attrs])}"


def _milliseconds(name: str, text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise PageError(
            400, "Bad duration", f"{name}={text!r} is not a duration in milliseconds; give a number such as 250."
        )
    if value > MAX_DURATION_MS:
        raise PageError(
            400, "Bad duration", f"{name}={text!r} is longer than a year; give at most {MAX_DURATION_MS:.0f}."
        )
    return value


def _filters(
    time_range: TimeRange,
    service: str | None,
    operation: str | None,
    min_ms: str | None,
    max_ms: str | None,
    status: str | None,
    attr: list[str],
) -> _Filters:
    low, high = _milliseconds("min_ms", min_ms), _milliseconds("max_ms", max_ms)
    if low is not None and high is not None and low >= high:
        raise PageError(
            400,
            "Bad duration range",
            f"min_ms ({min_ms}) is not below max_ms ({max_ms}); swap them, or clear one to leave that side open.",
        )
    status_text = (status or "").strip().lower()
    if status_text not in _STATUSES:
        raise PageError(400, "Bad status", f"status={status!r} is not a span status; use any, error, ok or unset.")
    attrs = [a for a in attr if a.strip()]
    try:
        attributes = tuple(parse_attribute(a) for a in attrs)
    except BadTraceSearch as exc:
        raise PageError(400, "Bad attribute filter", f"{exc}.") from None
    search = TraceSearch(
        start_s=time_range.start_s,
        end_s=time_range.end_s,
        service=(service or "").strip() or None,
        operation=(operation or "").strip() or None,
        min_duration_ms=low,
        max_duration_ms=high,
        status=_STATUSES[status_text],
        attributes=attributes,
    )
    text = {
        "service": search.service or "",
        "operation": search.operation or "",
        "min_ms": _ms_text(low),
        "max_ms": _ms_text(high),
        "status": status_text if _STATUSES[status_text] else "",
    }
    return _Filters(search, text, attrs)


def _ms_text(value: float | None) -> str:
    """A duration as the form shows it: 250, 0.5, 1000000 (never 1e+06)."""
    return "" if value is None else f"{value:f}".rstrip("0").rstrip(".")


def _edge_label(ms: int) -> str:
    return f"{ms // 1000} s" if ms >= 1000 else f"{ms} ms"


def _buckets() -> list[tuple[str, int, int | None]]:
    """(label, min ms, max ms or None) of each histogram bucket: <1 ms, 1-2 ms, ..., 500 ms-1 s, ..., ≥30 s."""
    buckets: list[tuple[str, int, int | None]] = [(f"<{_edge_label(BUCKET_EDGES_MS[0])}", 0, BUCKET_EDGES_MS[0])]
    for low, high in itertools.pairwise(BUCKET_EDGES_MS):
        low_text = _edge_label(low).split()[0] if (low >= 1000) == (high >= 1000) else _edge_label(low)
        buckets.append((f"{low_text}-{_edge_label(high)}", low, high))
    buckets.append((f"≥{_edge_label(BUCKET_EDGES_MS[-1])}", BUCKET_EDGES_MS[-1], None))
    return buckets


def _histogram_chart(histogram: DurationHistogram, filters: _Filters, time_range: TimeRange) -> dict[str, Any]:
    """Bars per duration bucket; a click searches that bucket, the selected range is highlighted."""
    search = filters.search
    narrowed = search.min_duration_ms is not None or search.max_duration_ms is not None
    selected_low = search.min_duration_ms or 0.0
    selected_high = math.inf if search.max_duration_ms is None else search.max_duration_ms
    buckets = _buckets()
    return bars(
        [label for label, _, _ in buckets],
        histogram.counts,
        title="Span durations (click a bar to search that range)",
        x_title="duration",
        y_title="spans",
        urls=[filters.url(time_range, min_ms=low, max_ms=high) for _, low, high in buckets],
        highlight=[
            narrowed and low >= selected_low and (math.inf if high is None else high) <= selected_high
            for _, low, high in buckets
        ],
    )


@router.get("/traces", response_class=HTMLResponse)
def traces_page(
    request: Request,
    reader: Reader,
    time_range: Range,
    service: str | None = None,
    operation: str | None = None,
    min_ms: str | None = None,
    max_ms: str | None = None,
    status: str | None = None,
    attr: Annotated[list[str], Query(description="span or resource attribute key=value; repeat for more")] = [],  # noqa: B006 (FastAPI copies defaults)
) -> HTMLResponse:
    filters = _filters(time_range, service, operation, min_ms, max_ms, status, attr)
    window = {"start_s": time_range.start_s, "end_s": time_range.end_s}
    with PageReads() as reads:
        found = reads.start(search_traces, reader.query, filters.search, limit=RESULT_LIMIT)
        histogram = reads.start(duration_histogram, reader.query, filters.search)
        names = reads.start(span_names, reader.query, **window, service=filters.search.service)
    durations = histogram.result()
    return render(
        request,
        "traces.html",
        title="Traces",
        time_range=time_range,
        traces=found.result(),
        filters=filters,
        names=names.result(),
        histogram=durations,
        histogram_chart=_histogram_chart(durations, filters, time_range) if durations.total else None,
        clear_url=link("/traces", time_range),
        result_limit=RESULT_LIMIT,
    )


# ---- one trace -------------------------------------------------------------------------------


def _value_text(value: Any) -> str:
    """An attribute value as the user reads it: strings as they are, other types as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _attribute_rows(attributes: dict[str, Any]) -> list[tuple[str, str]]:
    return [(key, _value_text(value)) for key, value in sorted(attributes.items())]


def _tree_order(spans: list[SpanRecord]) -> list[tuple[SpanRecord, int, bool]]:
    """(span, depth, parent missing) in tree order, siblings by start; spans whose parent is
    not in the trace are at the root level.

    >>> from types import SimpleNamespace as S
    >>> spans = [S(span_id="a", parent_span_id="", start_time_unix_nano=0),
    ...          S(span_id="b", parent_span_id="a", start_time_unix_nano=2),
    ...          S(span_id="c", parent_span_id="gone", start_time_unix_nano=1),
    ...          S(span_id="x", parent_span_id="y", start_time_unix_nano=3),
    ...          S(span_id="y", parent_span_id="x", start_time_unix_nano=4)]
    >>> [(s.span_id, depth, orphan) for s, depth, orphan in _tree_order(spans)]
    [('a', 0, False), ('b', 1, False), ('c', 0, True), ('x', 0, True), ('y', 0, True)]
    """
    ids = {s.span_id for s in spans}
    children: dict[str, list[SpanRecord]] = {}
    for span in sorted(spans, key=lambda s: (s.start_time_unix_nano, s.span_id)):
        parent = span.parent_span_id if span.parent_span_id in ids and span.parent_span_id != span.span_id else ""
        children.setdefault(parent, []).append(span)
    ordered: list[tuple[SpanRecord, int, bool]] = []
    # Depth-first without recursion: a deep trace must not hit Python's recursion limit.
    stack = [(span, 0) for span in reversed(children.get("", []))]
    while stack:
        span, depth = stack.pop()
        ordered.append((span, depth, bool(span.parent_span_id) and span.parent_span_id not in ids))
        stack.extend((child, depth + 1) for child in reversed(children.get(span.span_id, [])))
    # Spans in a parent cycle (malformed ids) are never reached from a root: show them anyway.
    shown = {span.span_id for span, _, _ in ordered}
    ordered += [(span, 0, True) for span in spans if span.span_id not in shown]
    return ordered


def _waterfall(trace_id: str, spans: list[SpanRecord]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Rows with their depth, bar and critical-path geometry (percent of the trace), and the
    colour of each service."""
    start = min(s.start_time_unix_nano for s in spans)
    end = max(s.start_time_unix_nano + s.duration_ns for s in spans)
    total = max(end - start, 1)
    path = critical_path(spans)
    ids = {s.span_id for s in spans}
    colors: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    for span, depth, orphan in _tree_order(spans):
        color = colors.setdefault(span.service, _SERVICE_COLORS[len(colors) % len(_SERVICE_COLORS)])
        rows.append(
            {
                "span": span,
                "depth": depth,
                "orphan": orphan,
                "color": color,
                "offset_ms": (span.start_time_unix_nano - start) / 1e6,
                "offset_pct": 100 * (span.start_time_unix_nano - start) / total,
                "width_pct": max(100 * span.duration_ns / total, 0.3),
                "critical": span.span_id in path,
                "critical_ns": path.self_ns(span.span_id),
                "sections": [
                    (100 * (a - start) / total, max(100 * (b - a) / total, 0.2))
                    for a, b in path.sections.get(span.span_id, [])
                ],
                "attributes": _attribute_rows(span.attributes),
                "resource": _attribute_rows(span.resource),
                "events": [
                    {
                        "name": event["name"],
                        "offset_ms": (event["time_unix_nano"] - span.start_time_unix_nano) / 1e6,
                        "attributes": _attribute_rows(event["attributes"]),
                    }
                    for event in span.events
                ],
                "links": [
                    {
                        "trace_id": lk["trace_id"],
                        "span_id": lk["span_id"],
                        "here": lk["trace_id"] == trace_id and lk["span_id"] in ids,
                        "attributes": _attribute_rows(lk["attributes"]),
                    }
                    for lk in span.links
                ],
            }
        )
    return rows, colors


def _root(spans: list[SpanRecord]) -> SpanRecord:
    """The trace's root: the earliest span without a parent, else the earliest whose parent is missing."""
    ids = {s.span_id for s in spans}
    ordered = sorted(spans, key=lambda s: (s.start_time_unix_nano, s.span_id))
    return next(
        (s for s in ordered if not s.parent_span_id),
        next((s for s in ordered if s.parent_span_id not in ids), ordered[0]),
    )


@router.get("/traces/{trace_id}", response_class=HTMLResponse)
def trace_page(request: Request, trace_id: str, reader: Reader) -> HTMLResponse:
    if not _TRACE_ID.match(trace_id):
        raise PageError(400, "Bad trace id", f"{trace_id!r} is not a trace id (32 hex characters).")
    trace_id = trace_id.lower()
    spans = reader.trace(trace_id)
    if not spans:
        raise PageError(
            404,
            "Trace not found",
            f"Trace {trace_id} was not found: it may be older than the retention, or not sent yet.",
        )
    rows, colors = _waterfall(trace_id, spans)
    start_ns = min(s.start_time_unix_nano for s in spans)
    end_ns = max(s.start_time_unix_nano + s.duration_ns for s in spans)
    # Whole seconds around the trace, for the pages of its services and its logs.
    around = TimeRange(math.floor(start_ns / 1e9) - _AROUND_S, math.ceil(end_ns / 1e9) + _AROUND_S, None)
    span_names_by_id = {s.span_id: s.name for s in spans}
    # Oldest first, to read alongside the waterfall; only around the trace, so the read skips other days.
    logs = list(reversed(reader.logs(start_s=around.start_s, end_s=around.end_s, trace_id=trace_id, limit=LOG_LIMIT)))
    root = _root(spans)
    return render(
        request,
        "trace.html",
        title=f"Trace {trace_id[:8]}",
        trace_id=trace_id,
        root=root,
        start_ns=start_ns,
        duration_ns=end_ns - start_ns,
        error_count=sum(1 for s in spans if s.status_code == "Error"),
        services=[
            (name, color, link(f"/services/{quote(name, safe='')}", around)) for name, color in sorted(colors.items())
        ],
        rows=rows,
        logs=logs,
        log_limit=LOG_LIMIT,
        logs_url=link("/logs", around, trace_id=trace_id),
        span_names=span_names_by_id,
    )
