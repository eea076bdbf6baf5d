"""``GET /metrics``: Vigil's own metrics in Prometheus' text exposition format, for a scraper.

Every role serves it on VIGIL_HTTP_PORT (the api with the API and pages, a collector or detector
beside its probes). What it holds is the Vigil's `vigil.self_metrics.SelfMetrics`, kept on
``app.state.self_metrics``; an app without one answers an empty exposition.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from vigil.self_metrics import CONTENT_TYPE, SelfMetrics

router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Vigil's own counters, gauges and histograms (read from disk and memory, never from ClickHouse)."""
    self_metrics: SelfMetrics | None = getattr(request.app.state, "self_metrics", None)
    body = self_metrics.exposition() if self_metrics is not None else b""
    return Response(body, media_type=CONTENT_TYPE)
