"""The web application: JSON API under /api/v1, health probes, and the dashboard pages."""

from __future__ import annotations

import logging

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from vigil.api.auth import Sessions, WebAuth, authorize
from vigil.api.routers import alerts, canary, deploys, findings, health, logs, metrics, network, services, slos, traces
from vigil.auth import Tokens
from vigil.settings import Settings
from vigil.store.read import StoreReader

__all__ = ["create_app", "web_auth"]

logger = logging.getLogger(__name__)


def web_auth(settings: Settings, tokens: Tokens | None) -> WebAuth | None:
    """What `authorize` checks requests against; None leaves every route open (auth not required)."""
    if tokens is None or not tokens.required:
        return None
    return WebAuth(tokens, Sessions(settings.session_secret, settings.session_ttl))


def create_app(settings: Settings, reader: StoreReader, tokens: Tokens | None = None) -> FastAPI:
    """The FastAPI app over `reader`; dashboards are mounted by the caller (see `vigil.server`).

    With `tokens` requiring auth, every route needs a token of the right scope (vigil.api.auth).
    """
    app = FastAPI(
        title="Vigil",
        version="0.1.0",
        summary="Observability and SLO service: services, traces, and what changed.",
        dependencies=[Depends(authorize)],
        max_body_size=settings.max_api_body_bytes,
    )
    app.state.settings = settings
    app.state.reader = reader
    app.state.auth = web_auth(settings, tokens)
    app.include_router(health.router)
    app.include_router(services.router)
    app.include_router(traces.router)
    app.include_router(logs.router)
    app.include_router(metrics.router)
    app.include_router(network.router)
    app.include_router(findings.router)
    app.include_router(deploys.router)
    app.include_router(canary.router)
    app.include_router(slos.router)
    app.include_router(alerts.router)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("request %s %s failed", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; see Vigil's log for the cause"}, status_code=500)

    return app
