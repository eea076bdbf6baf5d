"""Service level objectives: definitions, error budgets, burn rates and burn-rate alerts."""

from __future__ import annotations

import math
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Response

from vigil.api.deps import get_reader, invalid_parameter
from vigil.api.routers._responses import UNREADABLE_BODY, not_found
from vigil.detectors.slo import slo_status
from vigil.detectors.slo_burn import BURN_WINDOWS, budget_burndown
from vigil.store.read import StoreReader
from vigil.store.slos import SloDefinition, SloStore, parse_slo

router = APIRouter(prefix="/api/v1/slos", tags=["slos"])


def _store(reader: StoreReader) -> SloStore:
    return SloStore(reader.client, reader.database)


def counted_until() -> float:
    # Minutes are counted once closed; the newest closed minute is the status's "now".
    return math.floor(time.time() / 60) * 60


def slo_view(store: SloStore, slo: SloDefinition, now: float, *, burndown: bool = False) -> dict[str, Any]:
    status = slo_status(store, slo, now)
    view: dict[str, Any] = {
        **slo.to_dict(),
        "sli_current": status.sli_current,
        "error_budget_remaining": status.error_budget_remaining,
        "good": status.good,
        "total": status.total,
        "burn_rates": {label: status.burn_rates.get(label) for label in BURN_WINDOWS},
        "alerts": [alert.to_dict() for alert in status.alerts],
        "firing": [f"{a.severity} {a.long_window}/{a.short_window}" for a in status.firing],
    }
    if burndown:
        minutes = store.minutes(slo, now - slo.window_s, now)
        view["burndown"] = budget_burndown(minutes, objective=slo.objective, window_s=slo.window_s, now=now)
    return view


@router.get("")
def list_slos(reader: Annotated[StoreReader, Depends(get_reader)]) -> list[dict[str, Any]]:
    """Every SLO with its SLI and error budget over its window, burn rates over 5m ... 3d
    (error ratio / allowed error ratio; null without traffic) and its burn-rate alerts (the SRE
    Workbook's multiwindow policy unless the SLO has its own). Requests are counted per closed
    minute by the detectors."""
    store = _store(reader)
    now = counted_until()
    return [slo_view(store, slo, now) for slo in store.all()]


@router.get("/{name}", responses=not_found("SLO of that name"))
def get_slo(reader: Annotated[StoreReader, Depends(get_reader)], name: str) -> dict[str, Any]:
    """One SLO, with its error budget burn-down (remaining budget per hour over the window)."""
    store = _store(reader)
    slo = store.get(name)
    if slo is None:
        raise HTTPException(status_code=404, detail=f"no SLO named {name!r}")
    return slo_view(store, slo, counted_until(), burndown=True)


@router.put("/{name}", responses=UNREADABLE_BODY)
def put_slo(
    reader: Annotated[StoreReader, Depends(get_reader)],
    name: str,
    definition: Annotated[dict[str, Any], Body(examples=[{"service": "checkout", "objective": 99.9, "window": "30d"}])],
) -> dict[str, Any]:
    """Define or replace an SLO: `service`, `objective` (percent), `window` (1d-90d, default 30d),
    `kind` availability (`availability_by` status or http_status) or latency (`threshold_ms`),
    optional `operation`, `description`, and `alerts` (rules of `severity` page|ticket,
    `long_window`, `short_window`, `budget_fraction`) replacing the Workbook's policy."""
    try:
        slo = parse_slo(name, definition)
    except ValueError as exc:
        raise invalid_parameter("body", definition, str(exc), where="body") from None
    _store(reader).put(slo, source="api")
    return slo.to_dict()


@router.delete("/{name}", status_code=204, responses=not_found("SLO of that name"))
def delete_slo(reader: Annotated[StoreReader, Depends(get_reader)], name: str) -> Response:
    store = _store(reader)
    if store.get(name) is None:
        raise HTTPException(status_code=404, detail=f"no SLO named {name!r}")
    store.delete(name)
    return Response(status_code=204)
