"""Trace search and one trace with all its spans."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from vigil.api.deps import TimeWindow, get_reader, invalid_parameter, time_window
from vigil.store.read import SpanRecord, StoreReader, TraceSummary
from vigil.store.trace_search import MAX_DURATION_MS, BadTraceSearch, parse_attribute

router = APIRouter(prefix="/api/v1", tags=["traces"])

_TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")


@dataclass(frozen=True, slots=True)
class Trace:
    trace_id: str
    spans: list[SpanRecord]


@router.get("/traces", response_model=list[TraceSummary])
def search_traces(
    reader: Annotated[StoreReader, Depends(get_reader)],
    window: Annotated[TimeWindow, Depends(time_window)],
    service: str | None = None,
    operation: str | None = None,
    min_duration_ms: Annotated[
        float | None, Query(ge=0, le=MAX_DURATION_MS, description="span at least this long")
    ] = None,
    max_duration_ms: Annotated[
        float | None, Query(gt=0, le=MAX_DURATION_MS, description="span shorter than this")
    ] = None,
    status: Literal["error", "ok", "unset"] | None = None,
    attr: Annotated[
        list[str], Query(description="span or resource attribute as key=value; repeat to require several")
    ] = [],  # noqa: B006 (FastAPI copies defaults)
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[TraceSummary]:
    """Newest traces with a span matching every filter: service, operation (span name), span
    duration in [min, max), span status and attributes, within `since` (default 15m)."""
    if min_duration_ms is not None and max_duration_ms is not None and min_duration_ms >= max_duration_ms:
        raise invalid_parameter(
            "max_duration_ms", max_duration_ms, f"a duration above min_duration_ms ({min_duration_ms})"
        )
    try:
        attributes = tuple(parse_attribute(a) for a in attr)
    except BadTraceSearch as exc:
        raise invalid_parameter("attr", exc.value, exc.expected) from None
    return reader.traces(
        start_s=window.start_s,
        end_s=window.end_s,
        service=service,
        operation=operation,
        min_duration_ms=min_duration_ms,
        max_duration_ms=max_duration_ms,
        status=status,
        attributes=attributes,
        limit=limit,
    )


@router.get("/traces/{trace_id}", response_model=Trace, responses={404: {"description": "no such trace"}})
def get_trace(trace_id: str, reader: Annotated[StoreReader, Depends(get_reader)]) -> Trace:
    """Every span of one trace, ordered by start time, with typed attributes."""
    if not _TRACE_ID.match(trace_id):
        raise invalid_parameter("trace_id", trace_id, "32 hexadecimal characters", where="path")
    trace_id = trace_id.lower()
    spans = reader.trace(trace_id)
    if not spans:
        raise HTTPException(
            status_code=404,
            detail=f"trace {trace_id} was not found; it may be older than the traces retention or not yet sent",
        )
    return Trace(trace_id=trace_id, spans=spans)
