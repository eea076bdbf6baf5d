"""The services overview (the home page) and one service's page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from vigil.dashboards.render import Range, Reader, render

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def services_page(request: Request, reader: Reader, time_range: Range) -> HTMLResponse:
    services = reader.services(start_s=time_range.start_s, end_s=time_range.end_s)
    return render(
        request,
        "services.html",
        title="Services",
        time_range=time_range,
        services=services,
    )
