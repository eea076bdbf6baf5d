"""The services overview (the home page) and one service's page.

Both read rollups: RED from `spans_red_1m` (per service from its `by_service` projection), calls
between services from `service_edges_1m`, SLO counts from `slo_minutes`, and a service's newest
error spans from `error_spans`, which holds only error spans, ordered by service and time
(`vigil.store.service_read.recent_errors`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from vigil.dashboards.charts import Band, Line, Marker, time_series
from vigil.dashboards.reads import PageReads
from vigil.dashboards.render import PageError, Range, Reader, link, render
from vigil.dashboards.timerange import TimeRange
from vigil.detectors.slo import policy_of
from vigil.detectors.slo_burn import BURN_WINDOWS, evaluate, parse_window
from vigil.store import service_read
from vigil.store.deploys import Deploy, DeployStore
from vigil.store.findings import Finding, FindingQuery
from vigil.store.read import StoreReader
from vigil.store.slos import SloStore

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

# Points per sparkline on the overview, and per chart on a service's page (about).
_SPARK_BUCKETS = 40
_CHART_BUCKETS = 120
_RECENT_ERRORS = 20


@dataclass(frozen=True, slots=True)
class SloHealth:
    """A service's SLOs at a glance: the one with the least error budget left, and whether any burns."""

    worst: str
    budget_remaining: float
    burning: bool
    count: int


def _slo_health(reader: StoreReader) -> dict[str, SloHealth]:
    """Budget and burn-rate alerts of every SLO by service, as ``GET /api/v1/slos`` computes
    them, from one read of `slo_minutes` summed between the windows' edges."""
    slos = SloStore(reader.client, reader.database).all()
    if not slos:
        return {}
    now = math.floor(time.time() / 60) * 60  # the end of the newest counted minute, as the API uses
    windows = {slo.window_s for slo in slos} | {parse_window(label) for label in BURN_WINDOWS}
    windows |= {
        parse_window(w) for slo in slos for rule in policy_of(slo) for w in (rule.long_window, rule.short_window)
    }
    counts = service_read.slo_window_counts(
        reader.query, [(slo.name, slo.counting_key, slo.window_s) for slo in slos], now=now, windows_s=sorted(windows)
    )
    rows = {(c.name, c.counting_key): c.rows for c in counts}
    by_service: dict[str, list[tuple[float, str, bool]]] = {}
    for slo in slos:
        status = evaluate(
            rows[(slo.name, slo.counting_key)],
            objective=slo.objective,
            window_s=slo.window_s,
            now=now,
            policy=policy_of(slo),
        )
        by_service.setdefault(slo.service, []).append((status.error_budget_remaining, slo.name, bool(status.firing)))
    health: dict[str, SloHealth] = {}
    for service, statuses in by_service.items():
        budget_remaining, worst, _ = min(statuses)
        health[service] = SloHealth(worst, budget_remaining, any(firing for *_, firing in statuses), len(statuses))
    return health


@router.get("/", response_class=HTMLResponse)
def services_page(request: Request, reader: Reader, time_range: Range) -> HTMLResponse:
    start_s, end_s = time_range.start_s, time_range.end_s
    step = service_read.bucket_step(start_s, end_s, _SPARK_BUCKETS)
    # All at once; the SLOs of services with no requests in range are read and not shown.
    with PageReads() as reads:
        services = reads.start(reader.services, start_s=start_s, end_s=end_s)
        trends = reads.start(service_read.service_trends, reader.query, start_s=start_s, end_s=end_s, step=step)
        open_findings = reads.start(service_read.open_findings_by_service, reader.query)
        slo_health = reads.start(_slo_health, reader)
    return render(
        request,
        "services.html",
        title="Services",
        time_range=time_range,
        services=services.result(),
        trends=trends.result(),
        open_findings=open_findings.result(),
        slo_health=slo_health.result(),
    )


def _seconds_in(bucket_start_s: float, step: int, end_s: float) -> float:
    """How long a bucket has been counting: the last one is cut short by the range's end (usually
    now), and dividing its count by the whole step would draw a drop that did not happen."""
    return max(min(bucket_start_s + step, end_s) - bucket_start_s, 1.0)


def _chart_step(time_range: TimeRange) -> int:
    return service_read.bucket_step(time_range.start_s, time_range.end_s, _CHART_BUCKETS)


def _red_charts(
    red: list[service_read.RedPoint], time_range: TimeRange, markers: list[Marker], bands: list[Band]
) -> dict[str, dict[str, Any]]:
    start_s, end_s = time_range.start_s, time_range.end_s
    step = _chart_step(time_range)
    times = service_read.bucket_times(start_s, end_s, step)
    points = {p.time_s: p for p in red}
    per_bucket = [points.get(t) for t in times]

    def line(name: str, values: Sequence[float | None], dash: str = "solid") -> Line:
        return Line(name, times, values, dash)

    rate = [
        round(p.requests / _seconds_in(t, step, end_s), 3) if p else 0.0 for t, p in zip(times, per_bucket, strict=True)
    ]
    errors = [round(100 * p.errors / p.requests, 2) if p and p.requests else None for p in per_bucket]
    p50 = [p.p50_ms if p else None for p in per_bucket]
    p95 = [p.p95_ms if p else None for p in per_bucket]
    p99 = [p.p99_ms if p else None for p in per_bucket]
    per = f"per {step // 60} min" if step > 60 else "per minute"
    common: dict[str, Any] = {"time_range": time_range, "markers": markers, "bands": bands}
    return {
        "red-requests": time_series([line("requests/s", rate)], title=f"Requests/s ({per})", y_title="req/s", **common),
        "red-errors": time_series([line("error rate %", errors)], title=f"Error rate ({per})", y_title="%", **common),
        "red-latency": time_series(
            [line("p50", p50), line("p95", p95, "dash"), line("p99", p99, "dot")],
            title=f"Latency ({per})",
            y_title="ms",
            **common,
        ),
    }


def _version_chart(
    version_series: tuple[list[float], list[service_read.VersionSeries]], time_range: TimeRange
) -> dict[str, Any]:
    step, end_s = _chart_step(time_range), time_range.end_s
    times, series = version_series
    lines = [
        Line(
            s.version or "(no version)",
            times,
            [round(n / _seconds_in(t, step, end_s), 3) for t, n in zip(times, s.requests, strict=True)],
        )
        for s in series
    ]
    return time_series(lines, time_range=time_range, title="Requests/s per version", y_title="req/s")


@dataclass(frozen=True, slots=True)
class _Annotations:
    """What the service's charts draw over their lines, and its count of open findings."""

    markers: list[Marker]
    bands: list[Band]
    open_findings: int


def _annotations(
    reader: StoreReader,
    service: str,
    time_range: TimeRange,
    deploys: list[Deploy],
    findings: list[Finding],
    findings_limit: int,
) -> _Annotations:
    """Markers, bands and the open-findings count from the deploys in range and the findings
    open in it (at most `findings_limit`, newest first)."""
    deploys_url = link("/deploys", time_range, service=service)
    markers = [Marker(d.started_at, d.version, deploys_url) for d in sorted(deploys, key=lambda d: d.started_at)]
    now = time.time()
    bands = [
        Band(f.started_at, f.ended_at if f.ended_at is not None else now, f.summary, f.severity)
        for f in sorted(findings, key=lambda f: f.started_at)
        if f.started_at <= time_range.end_s
    ]
    # Findings from the range's start on include every open one (open findings have not ended),
    # unless the read stopped at its limit: then they are counted apart.
    if len(findings) < findings_limit:
        open_findings = sum(f.status == "open" for f in findings)
    else:
        open_findings = service_read.open_findings_by_service(reader.query).get(service, 0)
    return _Annotations(markers, bands, open_findings)


@router.get("/services/{service:path}", response_class=HTMLResponse)
def service_page(request: Request, service: str, reader: Reader, time_range: Range) -> HTMLResponse:
    start_s, end_s = time_range.start_s, time_range.end_s
    step = _chart_step(time_range)
    window = {"start_s": start_s, "end_s": end_s}
    findings_query = FindingQuery(since=start_s, service=service)
    # Every read at once, the longest first (the operations: a t-digest merge per rollup row), so
    # that the page's two lanes end close together; for a service with no requests in range, most
    # go unused.
    with PageReads() as reads:
        operations = reads.start(service_read.operations, reader.query, service, **window)
        series = reads.start(service_read.service_series, reader.query, service, **window, step=step)
        errors = reads.start(service_read.recent_errors, reader.query, service, **window, limit=_RECENT_ERRORS)
        deploys = reads.start(
            DeployStore(reader.client, reader.database).query, service=service, start=start_s, end=end_s
        )
        findings = reads.start(reader.findings, findings_query)
        dependencies = reads.start(service_read.dependencies, reader.query, service, **window)
    parts = series.result()
    annotations = _annotations(reader, service, time_range, deploys.result(), findings.result(), findings_query.limit)
    summary = parts.summary
    if summary is None and not service_read.service_known(reader.query, service):
        raise PageError(
            404,
            "Service not found",
            f"No service named {service!r} has sent requests that Vigil still holds. "
            "Check the name, or pick the service from the Services page.",
        )
    context: dict[str, Any] = {
        "service": service,
        "summary": summary,
        "open_findings": annotations.open_findings,
    }
    if summary is not None:
        calls = dependencies.result()
        no_rollup = (
            not request.app.state.settings.detectors_enabled
            and not calls.callers
            and not calls.callees
            and not service_read.edges_recorded(reader.query)
        )
        context.update(
            charts=_red_charts(parts.red, time_range, annotations.markers, annotations.bands),
            version_chart=_version_chart(parts.version_series, time_range),
            operations=operations.result(),
            versions=parts.versions,
            errors=errors.result(),
            dependencies=calls,
            edges_need_detectors=no_rollup,
        )
    return render(request, "service.html", title=service, time_range=time_range, **context)
