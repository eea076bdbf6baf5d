"""Per-service rate, errors and latency, from the per-minute rollup."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from vigil.api.deps import TimeWindow, get_reader, time_window
from vigil.store.read import ServiceSummary, StoreReader

router = APIRouter(prefix="/api/v1", tags=["services"])


@router.get("/services", response_model=list[ServiceSummary])
def list_services(
    reader: Annotated[StoreReader, Depends(get_reader)],
    window: Annotated[TimeWindow, Depends(time_window)],
) -> list[ServiceSummary]:
    """Every service that served requests in the window (`since`, default 15m), by name.

    Requests are entry spans (kind SERVER or CONSUMER, or without a parent); `rate_per_s` is
    requests over the whole window; `error_rate` is the share with status ERROR; latencies are
    milliseconds.
    """
    return reader.services(start_s=window.start_s, end_s=window.end_s)
