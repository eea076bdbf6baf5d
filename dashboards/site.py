"""The dashboard on the web app: page routers, static files, the vendored plotly.js, and
error pages (never a stack trace) for every path outside the JSON API."""

from __future__ import annotations

import gzip
import inspect
import logging
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from vigil.dashboards.pages import ROUTERS
from vigil.dashboards.render import PageError, env, render_error

__all__ = ["PLOTLY_JS_PATH", "PLOTLY_JS_VERSION", "install"]

logger = logging.getLogger(__name__)

_HERE = Path(__file__).parent
# plotly.js's basic bundle (scatter and bar: all Vigil's charts draw), shipped in vendor/: a
# quarter of the full bundle's size; a new browser tab opening two chart pages spent 3.0 s of
# CPU with it against 5.2 s with the full bundle.
PLOTLY_JS_VERSION = "4.1.1"
_PLOTLY_JS_FILE = _HERE / "vendor" / f"plotly-basic-{PLOTLY_JS_VERSION}.min.js"
# Versioned path: the file never changes under it, so browsers may cache it for a year.
PLOTLY_JS_PATH = f"/assets/plotly-basic-{PLOTLY_JS_VERSION}.min.js"
env.globals["plotly_js"] = PLOTLY_JS_PATH


@cache
def _plotly_js() -> tuple[bytes, bytes]:
    """plotly.js, plain and gzipped (1.2 MB -> 0.4 MB)."""
    body = _PLOTLY_JS_FILE.read_bytes()
    return body, gzip.compress(body, compresslevel=6)


def _is_api(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/api/") or path in ("/healthz", "/readyz", "/openapi.json", "/metrics")


async def _delegate(
    handler: Callable[[Request, Any], Response | Awaitable[Response]], request: Request, exc: Any
) -> Response:
    """Calls the API's own handler (sync or async) for a path under the JSON API."""
    result = handler(request, exc)
    return await result if inspect.isawaitable(result) else result


def install(app: FastAPI) -> None:
    """Adds the pages to `app` (built by vigil.api.app.create_app)."""
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")

    @app.get(PLOTLY_JS_PATH, include_in_schema=False)
    def plotly_js(request: Request) -> Response:
        plain, packed = _plotly_js()
        headers = {"Cache-Control": "public, max-age=31536000, immutable", "Vary": "Accept-Encoding"}
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return Response(packed, media_type="text/javascript", headers=headers)
        return Response(plain, media_type="text/javascript", headers=headers)

    @app.exception_handler(PageError)
    async def page_error(request: Request, exc: PageError) -> Response:
        return render_error(request, exc)

    api_http_error = app.exception_handlers[StarletteHTTPException]
    api_internal_error = app.exception_handlers[Exception]

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _is_api(request):
            return await _delegate(api_http_error, request, exc)
        if exc.status_code == 401:
            # A page asked for without signing in: to the login form, and back here after it.
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
        if exc.status_code == 403:
            error = PageError(403, "Not allowed", str(exc.detail))
        elif exc.status_code == 404:
            error = PageError(404, "Page not found", f"There is no page at {request.url.path}. Start from Services.")
        elif exc.status_code == 405:
            error = PageError(405, "Method not allowed", f"{request.method} is not accepted at {request.url.path}.")
        else:
            error = PageError(exc.status_code, "Request failed", str(exc.detail))
        return render_error(request, error)

    api_validation_error = app.exception_handlers[RequestValidationError]

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        if _is_api(request):
            return await _delegate(api_validation_error, request, exc)
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors())
        return render_error(
            request, PageError(400, "Bad request", f"This page cannot read its parameters: {problems}.")
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        if _is_api(request):
            return await _delegate(api_internal_error, request, exc)
        logger.exception("page %s failed", request.url.path)
        error = PageError(500, "Something went wrong", "This page failed to load; Vigil's log has the cause.")
        return render_error(request, error)
