"""The deploys timeline, with the canary analyses around each deploy, and one analysis's page."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from vigil.api.routers.canary import judged_analysis
from vigil.dashboards.pages._oncall import service_url_at
from vigil.dashboards.render import PageError, Range, Reader, duration_text, render
from vigil.settings import Settings
from vigil.store.canary_store import CanaryAnalysis, CanaryStore
from vigil.store.deploys import Deploy, DeployStore

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

_LIMIT = 200
# The service page around a deploy, and how near a canary analysis's window must be to count as its.
_AROUND_S = 30 * 60
_CANARY_NEAR_S = 86400.0


def _safe_url(url: str) -> str | None:
    """`url` if it is a web address; a javascript: or data: URL from a report is never made a link."""
    return url if url.lower().startswith(("https://", "http://")) else None


def _belongs(analysis: CanaryAnalysis, deploy: Deploy) -> bool:
    """An analysis of the deploy's service that tested the deployed version, within a day of it
    (a version deployed again a week later is another rollout)."""
    return (
        analysis.service == deploy.service
        and analysis.canary_version == deploy.version
        and deploy.started_at - _CANARY_NEAR_S <= analysis.end
        and analysis.start <= deploy.started_at + _CANARY_NEAR_S
    )


@router.get("/deploys", response_class=HTMLResponse)
def deploys_page(request: Request, reader: Reader, time_range: Range, service: str | None = None) -> HTMLResponse:
    deploys = DeployStore(reader.client, reader.database).query(
        service=service or None, start=time_range.start_s, end=time_range.end_s, limit=_LIMIT
    )
    analyses = (
        CanaryStore(reader.client, reader.database).recent(
            service=service or None, since=time_range.start_s - _CANARY_NEAR_S, limit=1000
        )
        if deploys
        else []
    )
    rows = [
        {
            "deploy": deploy,
            "service_url": service_url_at(deploy.service, deploy.started_at - _AROUND_S, deploy.started_at + _AROUND_S),
            "url": _safe_url(deploy.url),
            "analyses": [a for a in analyses if _belongs(a, deploy)],
        }
        for deploy in deploys
    ]
    return render(
        request,
        "deploys.html",
        title="Deploys",
        time_range=time_range,
        rows=rows,
        truncated=len(deploys) == _LIMIT,
        limit=_LIMIT,
        service=service or "",
    )


def _check_view(check: dict[str, Any]) -> dict[str, Any]:
    """A check's figures as the table shows them: what each arm looked like, in the check's terms."""
    kind, effect = check["kind"], check["effect"]
    if kind == "error_rate":
        figures = {arm: _error_figures(check[arm]) for arm in ("baseline", "canary")}
        effect_text = None if effect is None else f"{effect * 100:+.2f} pp"
    else:
        unit = " ms" if kind == "latency" else ""
        figures = {arm: _quantile_figures(check[arm], unit) for arm in ("baseline", "canary")}
        effect_text = None if effect is None else f"{effect:+.1%}"
    return {**check, "figures": figures, "effect_text": effect_text}


def _error_figures(arm: dict[str, Any]) -> str:
    rate = arm["error_rate"]
    return f"{arm['n']:,} requests, " + ("no errors measured" if rate is None else f"{rate:.2%} errors")


def _quantile_figures(arm: dict[str, Any], unit: str) -> str:
    if arm["p50_ms"] is None:
        return f"n={arm['n']:,}"
    quantiles = ", ".join(f"{q} {arm[q + '_ms']:,.1f}{unit}" for q in ("p50", "p95", "p99"))
    return f"n={arm['n']:,}, {quantiles}"


@router.get("/canary/{analysis_id}", response_class=HTMLResponse)
def canary_page(request: Request, reader: Reader, analysis_id: str) -> HTMLResponse:
    stored = CanaryStore(reader.client, reader.database).get(analysis_id)
    if stored is None:
        raise PageError(
            404,
            "Canary analysis not found",
            f"There is no canary analysis with id {analysis_id!r}. Analyses are listed beside their deploys.",
        )
    settings: Settings = request.app.state.settings
    # Judged as GET /api/v1/canary/analyses/{id} judges it: figures so far while running, for good once closed.
    analysis = judged_analysis(reader, settings, stored)
    return render(
        request,
        "canary.html",
        title=f"Canary {analysis.service} {analysis.canary_version} vs {analysis.baseline_version}",
        analysis=analysis,
        checks=[_check_view(check) for check in analysis.checks],
        minutes=duration_text(analysis.end - analysis.start),
        open_for=duration_text(analysis.end - time.time()) if analysis.status == "running" else None,
        service_url=service_url_at(analysis.service, analysis.start - _AROUND_S, analysis.end + _AROUND_S),
    )
