"""Dashboard pages: read-only views rendered with Jinja2 (autoescape on)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from vigil.settings import parse_duration
from vigil.store.read import SpanRecord, StoreReader

__all__ = ["RANGES", "router", "static_files"]

_HERE = Path(__file__).parent
_env = Environment(
    loader=FileSystemLoader(_HERE / "templates"),
    autoescape=select_autoescape(["html"], default=True),
)
_TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")

# Time-range presets offered on every page; the choice travels in the URL (?since=).
RANGES = ("5m", "15m", "1h", "6h", "24h", "7d")

router = APIRouter(include_in_schema=False)


def static_files() -> StaticFiles:
    return StaticFiles(directory=_HERE / "static")


def _reader(request: Request) -> StoreReader:
    reader: StoreReader = request.app.state.reader
    return reader


def _render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_env.get_template(name).render(ranges=RANGES, **context), status_code=status_code)


def _since(value: str | None) -> tuple[str, float]:
    since = value if value in RANGES else "15m"
    return since, parse_duration(since)


def _fmt_time(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ns / 1e9)) + f".{(ns // 1_000_000) % 1000:03d}Z"


_env.filters["ns_time"] = _fmt_time
_env.filters["ms"] = lambda ns: f"{ns / 1e6:,.2f}"


@router.get("/", response_class=HTMLResponse)
def services_page(
    request: Request, reader: Annotated[StoreReader, Depends(_reader)], since: str | None = None
) -> HTMLResponse:
    label, seconds = _since(since)
    now = time.time()
    services = reader.services(start_s=now - seconds, end_s=now)
    settings = request.app.state.settings
    return _render(
        "services.html",
        title="Services",
        since=label,
        services=services,
        otlp_http_port=settings.otlp_http_port,
        otlp_grpc_port=settings.otlp_grpc_port,
        bind=settings.bind,
    )


@router.get("/traces", response_class=HTMLResponse)
def traces_page(
    reader: Annotated[StoreReader, Depends(_reader)],
    since: str | None = None,
    service: str | None = None,
    status: str | None = None,
) -> HTMLResponse:
    label, seconds = _since(since)
    now = time.time()
    status_filter: Literal["error"] | None = "error" if status == "error" else None
    found = reader.traces(start_s=now - seconds, end_s=now, service=service or None, status=status_filter, limit=50)
    return _render(
        "traces.html",
        title="Traces",
        since=label,
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
def trace_page(trace_id: str, reader: Annotated[StoreReader, Depends(_reader)]) -> HTMLResponse:
    if not _TRACE_ID.match(trace_id):
        return _render(
            "error.html",
            400,
            title="Bad trace id",
            message=f"{trace_id!r} is not a trace id (32 hex characters).",
        )
    spans = reader.trace(trace_id.lower())
    if not spans:
        return _render(
            "error.html",
            404,
            title="Trace not found",
            message=f"Trace {trace_id} was not found: it may be older than the retention, or not sent yet.",
        )
    rows = _waterfall(spans)
    duration = max(s.start_time_unix_nano + s.duration_ns for s in spans) - min(s.start_time_unix_nano for s in spans)
    # Oldest first, to read alongside the waterfall.
    logs = list(reversed(reader.logs(start_s=None, end_s=None, trace_id=trace_id.lower(), limit=500)))
    return _render(
        "trace.html",
        title=f"Trace {trace_id[:8]}",
        trace_id=trace_id.lower(),
        logs=logs,
        rows=rows,
        duration_ns=duration,
    )
