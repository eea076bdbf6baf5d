"""Trace search and the trace view (waterfall, span details, the trace's logs)."""

from __future__ import annotations

import re
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from vigil.dashboards.render import PageError, Range, Reader, render
from vigil.store.read import SpanRecord

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
_TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")


@router.get("/traces", response_class=HTMLResponse)
def traces_page(
    request: Request,
    reader: Reader,
    time_range: Range,
    service: str | None = None,
    status: str | None = None,
) -> HTMLResponse:
    status_filter: Literal["error"] | None = "error" if status == "error" else None
    found = reader.traces(
        start_s=time_range.start_s, end_s=time_range.end_s, service=service or None, status=status_filter, limit=50
    )
    return render(
        request,
        "traces.html",
        title="Traces",
        time_range=time_range,
        traces=found,
        service=service or "",
        status=status_filter or "",
    )


def _waterfall(spans: list[SpanRecord]) -> list[dict[str, Any]]:
    """Spans in tree order with their depth and bar geometry (percent of the trace)."""
    start = min(s.start_time_unix_nano for s in spans)
    end = max(s.start_time_unix_nano + s.duration_ns for s in spans)
    total = max(end - start, 1)
    ids = {s.span_id for s in spans}
    children: dict[str, list[SpanRecord]] = {}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids else ""
        children.setdefault(parent, []).append(span)
    rows: list[dict[str, Any]] = []

    def visit(parent: str, depth: int) -> None:
        for span in children.get(parent, []):
            rows.append(
                {
                    "span": span,
                    "depth": depth,
                    "offset_pct": 100 * (span.start_time_unix_nano - start) / total,
                    "width_pct": max(100 * span.duration_ns / total, 0.3),
                }
            )
            visit(span.span_id, depth + 1)

    visit("", 0)
    return rows


@router.get("/traces/{trace_id}", response_class=HTMLResponse)
def trace_page(request: Request, trace_id: str, reader: Reader) -> HTMLResponse:
    if not _TRACE_ID.match(trace_id):
        raise PageError(400, "Bad trace id", f"{trace_id!r} is not a trace id (32 hex characters).")
    spans = reader.trace(trace_id.lower())
    if not spans:
        raise PageError(
            404,
            "Trace not found",
            f"Trace {trace_id} was not found: it may be older than the retention, or not sent yet.",
        )
    rows = _waterfall(spans)
    duration = max(s.start_time_unix_nano + s.duration_ns for s in spans) - min(s.start_time_unix_nano for s in spans)
    # Oldest first, to read alongside the waterfall.
    logs = list(reversed(reader.logs(start_s=None, end_s=None, trace_id=trace_id.lower(), limit=500)))
    return render(
        request,
        "trace.html",
        title=f"Trace {trace_id[:8]}",
        trace_id=trace_id.lower(),
        logs=logs,
        rows=rows,
        duration_ns=duration,
    )
