"""Trace search and one trace with all its spans."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel

from vigil.api.deps import TimeWindow, get_reader, invalid_parameter, time_window
from vigil.store.read import StoreReader

router = APIRouter(prefix="/api/v1", tags=["traces"])

_TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")


class TraceSummary(BaseModel):
    trace_id: str
    root_service: str
    root_name: str
    start_time_unix_nano: int
    duration_ns: int
    span_count: int
    error_count: int
    services: list[str]


class Span(BaseModel):
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


class Trace(BaseModel):
    trace_id: str
    spans: list[Span]


@router.get("/traces", response_model=list[TraceSummary])
def search_traces(
    reader: Annotated[StoreReader, Depends(get_reader)],
    window: Annotated[TimeWindow, Depends(time_window)],
    service: str | None = None,
    operation: str | None = None,
    min_duration_ms: Annotated[float | None, Query(ge=0)] = None,
    status: Literal["error", "ok", "unset"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[TraceSummary]:
    """Newest traces with a span matching every filter: service, operation (span name),
    minimum span duration, span status, within `since` (default 15m)."""
    found = reader.traces(
        start_s=window.start_s,
        end_s=window.end_s,
        service=service,
        operation=operation,
        min_duration_ms=min_duration_ms,
        status=status,
        limit=limit,
    )
    return [TraceSummary.model_validate(t, from_attributes=True) for t in found]


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
    return Trace(trace_id=trace_id, spans=[Span.model_validate(s, from_attributes=True) for s in spans])
