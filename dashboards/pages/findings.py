"""The findings feed (what the detectors found in the range) and one finding's page."""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from vigil.dashboards.pages._oncall import service_url_at
from vigil.dashboards.render import PageError, Range, Reader, duration_text, link, render
from vigil.store.deploys import Deploy, DeployStore
from vigil.store.findings import Finding, FindingQuery

__all__ = ["KINDS", "router"]

router = APIRouter(include_in_schema=False)

# The kinds the detectors write (vigil.alerts.rules lists the same for alert rules).
KINDS = ("service_regression", "replication_lag", "log_pattern", "network", "slo_burn", "monitor")
# The page's words for the store's statuses: a closed finding reads as resolved.
_STATUSES: dict[str, Literal["open", "closed"]] = {"open": "open", "resolved": "closed"}
_LIMIT = 500
# The service page around a finding: a margin either side to see it begin and end.
_MARGIN_S = 15 * 60
# Detectors name the deploy nearest before an onset within a day (and a few minutes after it).
_DEPLOY_LOOKBACK_S = 86400.0
_DEPLOY_SLACK_S = 180.0


def _gap_text(seconds: float) -> str:
    return f"{duration_text(seconds)} before" if seconds >= 0 else f"{duration_text(-seconds)} after"


def _finding_view(finding: Finding, deploys: dict[str, Deploy], now: float) -> dict[str, Any]:
    ended = finding.ended_at
    deploy = deploys.get(finding.deploy_id)
    return {
        "finding": finding,
        "service_url": service_url_at(
            finding.service, finding.started_at - _MARGIN_S, (ended if ended is not None else now) + _MARGIN_S
        ),
        "lasted": duration_text((ended if ended is not None else now) - finding.started_at),
        "deploy": deploy,
        "deploy_gap": None if deploy is None else _gap_text(finding.started_at - deploy.started_at),
        "deploy_url": None
        if deploy is None
        else link(
            "/deploys",
            None,
            service=deploy.service,
            start=int(deploy.started_at - 30 * 60),
            end=int(deploy.started_at + 30 * 60),
        ),
    }


def _deploys_by_id(reader: Reader, findings: list[Finding], start_s: float, end_s: float) -> dict[str, Deploy]:
    """The deploys the findings name: one read over the range, and a lookup for any named older."""
    wanted = {f.deploy_id for f in findings if f.deploy_id}
    if not wanted:
        return {}
    store = DeployStore(reader.client, reader.database)
    found = {
        d.id: d
        for d in store.query(start=start_s - _DEPLOY_LOOKBACK_S, end=end_s + _DEPLOY_SLACK_S, limit=10_000)
        if d.id in wanted
    }
    for deploy_id in sorted(wanted - set(found)):
        deploy = store.get(deploy_id)
        if deploy is not None:
            found[deploy_id] = deploy
    return found


@router.get("/findings", response_class=HTMLResponse)
def findings_page(
    request: Request,
    reader: Reader,
    time_range: Range,
    service: str | None = None,
    kind: str | None = None,
    status: str | None = None,
) -> HTMLResponse:
    if status and status not in _STATUSES:
        raise PageError(400, "Bad status filter", f"status={status!r} is not a status; use open or resolved.")
    query = FindingQuery(
        since=time_range.start_s,
        until=time_range.end_s,
        service=service or None,
        kind=kind or None,
        status=_STATUSES[status] if status else None,
        limit=_LIMIT,
    )
    findings = reader.findings(query)
    now = time.time()
    deploys = _deploys_by_id(reader, findings, time_range.start_s, time_range.end_s)
    kinds = list(KINDS) + ([kind] if kind and kind not in KINDS else [])
    return render(
        request,
        "findings.html",
        title="Findings",
        time_range=time_range,
        rows=[_finding_view(f, deploys, now) for f in findings],
        truncated=len(findings) == _LIMIT,
        limit=_LIMIT,
        kinds=kinds,
        service=service or "",
        kind=kind or "",
        status=status or "",
    )


@router.get("/findings/{finding_id}", response_class=HTMLResponse)
def finding_page(request: Request, reader: Reader, finding_id: str) -> HTMLResponse:
    finding = reader.finding(finding_id)
    if finding is None:
        raise PageError(
            404,
            "Finding not found",
            f"There is no finding with id {finding_id!r}. Findings are listed on the Findings page.",
        )
    deploys = _deploys_by_id(reader, [finding], finding.started_at, finding.started_at)
    view = _finding_view(finding, deploys, time.time())
    return render(request, "finding.html", title=f"Finding {finding.id}", **view)
