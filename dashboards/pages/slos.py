"""The SLOs page: each SLO's compliance, error budget, burn rates, alert state and burn-down."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from vigil.api.routers.slos import counted_until, slo_view
from vigil.dashboards import charts
from vigil.dashboards.pages._oncall import service_path
from vigil.dashboards.render import Range, Reader, render
from vigil.dashboards.timerange import TimeRange
from vigil.detectors.slo_burn import error_budget, sli
from vigil.store.slos import SloStore

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


def alert_state(view: dict[str, Any]) -> str:
    """``page``, ``ticket`` or ``ok``: the most severe of the SLO's firing burn-rate alerts."""
    severities = {alert["severity"] for alert in view["alerts"] if alert["firing"]}
    return "page" if "page" in severities else "ticket" if "ticket" in severities else "ok"


def _burndown_chart(view: dict[str, Any], window_s: float, now: float) -> dict[str, Any]:
    points = view["burndown"]
    spec = charts.time_series(
        [charts.Line("budget remaining", [t for t, _ in points], [remaining * 100 for _, remaining in points])],
        time_range=TimeRange(now - window_s, now, None),
        title=f"Error budget remaining over {view['window']}",
        y_title="% of budget",
    )
    # The chart spans the SLO's own window, not the page's range: a drag must not re-range the page.
    spec["zoom"] = False
    return spec


@router.get("/slos", response_class=HTMLResponse)
def slos_page(request: Request, reader: Reader, time_range: Range) -> HTMLResponse:
    store = SloStore(reader.client, reader.database)
    now = counted_until()
    rows = []
    for slo in store.all():
        # The same view as GET /api/v1/slos/{name}, so the page and the API never disagree.
        view = slo_view(store, slo, now, burndown=True)
        budget = error_budget(slo.objective)
        remaining = view["error_budget_remaining"]
        in_range = store.minutes(slo, time_range.start_s, time_range.end_s)
        range_good, range_total = sum(m[1] for m in in_range), sum(m[2] for m in in_range)
        rows.append(
            {
                "view": view,
                "state": alert_state(view),
                "service_url": service_path(slo.service),
                # The budget as requests (of those served in the window) and as minutes of the window.
                "budget_requests": budget * view["total"],
                "remaining_requests": remaining * budget * view["total"],
                "budget_minutes": budget * slo.window_s / 60,
                "remaining_minutes": remaining * budget * slo.window_s / 60,
                "range_sli": sli(range_good, range_total),
                "range_total": range_total,
                "chart": _burndown_chart(view, slo.window_s, now),
            }
        )
    return render(request, "slos.html", title="SLOs", time_range=time_range, rows=rows)
