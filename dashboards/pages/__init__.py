"""One module per page (or small family of pages); each exposes `router`."""

from __future__ import annotations

from vigil.dashboards.pages import alerts, deploys, findings, login, logs, network, services, slos, traces

__all__ = ["ROUTERS"]

ROUTERS = (
    services.router,
    traces.router,
    logs.router,
    network.router,
    slos.router,
    findings.router,
    deploys.router,
    alerts.router,
    login.router,
)
