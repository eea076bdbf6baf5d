"""What the detectors found: regressions, replication lag, log patterns, network anomalies."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query

from vigil.api.deps import TimeWindow, get_reader, time_window
from vigil.api.routers._responses import not_found
from vigil.store.findings import Finding, FindingQuery
from vigil.store.read import StoreReader

router = APIRouter(prefix="/api/v1/findings", tags=["findings"])


@router.get("", response_model=list[Finding])
def list_findings(
    reader: Annotated[StoreReader, Depends(get_reader)],
    window: Annotated[TimeWindow, Depends(time_window)],
    service: str | None = None,
    kind: str | None = None,
    status: Literal["open", "closed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[Finding]:
    """Findings that started in the window (`since`, default 15m) or are still open, newest first.

    `kind` is one of service_regression, replication_lag, log_pattern, network. Times are unix
    seconds; `baseline` and `observed` are in `unit`; `deploy_id` names the deploy nearest
    before the onset; `exemplar_trace_ids` are slow or erroring requests since the onset;
    `top_attributes` are the attribute values most over-represented among them (`share`)
    against the hour before the onset (`baseline_share`).
    """
    return reader.findings(FindingQuery(since=window.start_s, service=service, kind=kind, status=status, limit=limit))


@router.get("/{finding_id}", response_model=Finding, responses=not_found("finding with that id"))
def get_finding(reader: Annotated[StoreReader, Depends(get_reader)], finding_id: str) -> Finding:
    """One finding by id."""
    finding = reader.finding(finding_id)
    if finding is None:
        raise HTTPException(status_code=404, detail=f"no finding with id {finding_id!r}")
    return finding
