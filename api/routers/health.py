"""Liveness and readiness, for load balancers and Kubernetes probes.

Readiness means different things per role. The API reads ClickHouse, so it is ready when
ClickHouse answers. A collector (`vigil collector`, and `vigil serve`) writes to its spill
queue, the write-ahead log, and an unreachable ClickHouse is exactly when that queue should
take the data: it is ready while the queue has room, and not ready once it is full, when its
receivers refuse data too.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from vigil.api.deps import get_reader
from vigil.errors import RetryableError

__all__ = ["SpillQueue", "router"]

router = APIRouter(tags=["health"])


class SpillQueue(Protocol):
    """The collector's write-ahead logs as readiness sees them (`vigil.collector.wal.WalCapacity`)."""

    max_bytes: int

    def size_bytes(self) -> int: ...

    def store_unavailable(self) -> bool: ...

    def refusal(self, size_bytes: int) -> RetryableError | None: ...


def get_spill_queue(request: Request) -> SpillQueue | None:
    """The spill queue where this process runs a collector; None for the api and detect roles alone."""
    queue: SpillQueue | None = getattr(request.app.state, "spill_queue", None)
    return queue


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=None,
    responses={503: {"description": "ClickHouse does not answer (api), or the spill queue is full (collector)"}},
)
def readyz(request: Request, spill_queue: Annotated[SpillQueue | None, Depends(get_spill_queue)]) -> JSONResponse:
    """The process can serve: for a collector, its spill queue has room; otherwise ClickHouse answers."""
    if spill_queue is None:
        # Read here, not as a dependency: a collector started while ClickHouse was unreachable has no reader.
        reader = get_reader(request)
        if reader.ping():
            return JSONResponse({"status": "ready", "store": "up"})
        return JSONResponse(
            {"status": "not ready", "store": "down", "reason": "ClickHouse does not answer"}, status_code=503
        )
    # Not a ping: a ClickHouse that drops packets would hold the probe past its timeout. The
    # inserter's flag says whether inserts are failing, which is what a collector cares about.
    size = spill_queue.size_bytes()
    body: dict[str, Any] = {
        "status": "ready",
        "store": "down" if spill_queue.store_unavailable() else "up",
        "spill_queue_bytes": size,
        "spill_queue_limit": spill_queue.max_bytes,
    }
    refusal = spill_queue.refusal(size)
    if refusal is None:
        return JSONResponse(body)
    return JSONResponse({**body, "status": "not ready", "reason": str(refusal)}, status_code=503)
