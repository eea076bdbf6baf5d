"""Liveness and readiness, for load balancers and Kubernetes probes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from vigil.api.deps import get_reader
from vigil.store.read import StoreReader

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None, responses={503: {"description": "ClickHouse does not answer"}})
def readyz(reader: Annotated[StoreReader, Depends(get_reader)]) -> JSONResponse:
    """The process can serve: ClickHouse answers."""
    if reader.ping():
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "not ready", "reason": "ClickHouse does not answer"}, status_code=503)
