"""Per-service rate, errors and latency, from the per-minute rollup."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from vigil.api.deps import TimeWindow, get_reader, time_window
from vigil.store.read import StoreReader

router = APIRouter(prefix="/api/v1", tags=["services"])


class Service(BaseModel):
    service: str
    requests: int
    rate_per_s: float
    error_rate: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


@router.get("/services", response_model=list[Service])
def list_services(
    reader: Annotated[StoreReader, Depends(get_reader)],
    window: Annotated[TimeWindow, Depends(time_window)],
) -> list[Service]:
    """Every service that served requests in the window (`since`, default 15m), by name.

    Requests are entry spans (kind SERVER or CONSUMER, or without a parent); `error_rate`
    is the share with status ERROR; latencies are milliseconds.
    """
    return [
        Service.model_validate(s, from_attributes=True)
        for s in reader.services(start_s=window.start_s, end_s=window.end_s)
    ]
