"""Rendering shared by every page: the Jinja2 environment (autoescape on), filters, links
that keep the time range, and the error page."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Query, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from vigil.dashboards.timerange import PRESETS, REFRESH_CHOICES, BadTimeRange, TimeRange, parse_time_range
from vigil.store.read import StoreReader

__all__ = [
    "NAV",
    "PageError",
    "Range",
    "Reader",
    "Receivers",
    "duration_text",
    "env",
    "link",
    "may_change",
    "render",
    "render_error",
    "signed_in",
]

_HERE = Path(__file__).parent
env = Environment(
    loader=FileSystemLoader(_HERE / "templates"),
    autoescape=select_autoescape(["html"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)

# The navigation bar: (label, path). A page is "current" when its path is the longest prefix.
NAV = (
    ("Services", "/"),
    ("Traces", "/traces"),
    ("Logs", "/logs"),
    ("Patterns", "/logs/patterns"),
    ("Network", "/network"),
    ("SLOs", "/slos"),
    ("Findings", "/findings"),
    ("Deploys", "/deploys"),
    ("Alerts", "/alerts"),
)


@dataclass(frozen=True, slots=True)
class Receivers:
    """Where telemetry goes, as the empty states print it; a port of 0 means that receiver is off."""

    host: str
    http: int
    otlp_http: int
    otlp_grpc: int
    statsd: int = 0
    netflow: int = 0
    ipfix: int = 0


def _receivers(request: Request) -> Receivers:
    bound: Receivers | None = getattr(request.app.state, "receivers", None)
    if bound is not None:
        return bound
    settings = request.app.state.settings
    return Receivers(
        host=settings.bind,
        http=settings.http_port,
        otlp_http=settings.otlp_http_port,
        otlp_grpc=settings.otlp_grpc_port,
        statsd=settings.statsd_port if settings.statsd_enabled else 0,
        netflow=settings.netflow_port if settings.netflow_enabled else 0,
        ipfix=settings.ipfix_port if settings.netflow_enabled else 0,
    )


class PageError(Exception):
    """Raised by a page to show an error page with `status`; the message says what to do."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


def _time_range(
    since: Annotated[str | None, Query(description="relative range, e.g. 1h")] = None,
    start: Annotated[str | None, Query(description="absolute start: unix seconds or ISO 8601")] = None,
    end: Annotated[str | None, Query(description="absolute end: unix seconds or ISO 8601")] = None,
    refresh: Annotated[str | None, Query(description="auto-refresh interval for relative ranges")] = None,
) -> TimeRange:
    try:
        return parse_time_range(since, start, end, refresh)
    except BadTimeRange as exc:
        raise PageError(400, "Bad time range", str(exc)) from None


def _reader(request: Request) -> StoreReader:
    reader: StoreReader = request.app.state.reader
    return reader


Range = Annotated[TimeRange, Depends(_time_range)]
Reader = Annotated[StoreReader, Depends(_reader)]


def link(path: str, time_range: TimeRange | None = None, /, **params: Any) -> str:
    """`path` with `params` (None and "" dropped) and the time range's own parameters."""
    query: dict[str, str | list[str]] = dict(time_range.params()) if time_range is not None else {}
    for key, value in params.items():
        if value is None or value == "" or value == []:
            query.pop(key, None)
        elif isinstance(value, list | tuple):
            query[key] = [str(v) for v in value]  # a repeated parameter, e.g. several attr filters
        else:
            query[key] = str(value)
    return f"{path}?{urlencode(query, doseq=True)}" if query else path


def _fmt_ns(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ns / 1e9)) + f".{(ns // 1_000_000) % 1000:03d}Z"


def _fmt_s(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + "Z"


def duration_text(seconds: float) -> str:
    """How long, to the units an on-call engineer reads.

    >>> duration_text(45), duration_text(750), duration_text(11_100), duration_text(187_200)
    ('45s', '12m', '3h 5m', '2d 4h')
    """
    seconds = max(int(seconds), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m" if minutes else f"{secs}s"


def _fmt_ago(unix_s: float) -> str:
    return f"{duration_text(time.time() - unix_s)} ago"


def _fmt_bits(bits_per_s: float) -> str:
    for unit, size in (("Gb/s", 1e9), ("Mb/s", 1e6), ("kb/s", 1e3)):
        if bits_per_s >= size:
            return f"{bits_per_s / size:,.2f} {unit}"
    return f"{bits_per_s:,.0f} b/s"


env.filters["ns_time"] = _fmt_ns
env.filters["s_time"] = _fmt_s
env.filters["ago"] = _fmt_ago
env.filters["ms"] = lambda ns: f"{ns / 1e6:,.2f}"
env.filters["pct"] = lambda ratio, digits=2: "n/a" if ratio is None else f"{ratio * 100:.{digits}f}%"
env.filters["count"] = lambda n: f"{int(n):,}"
env.filters["bits"] = _fmt_bits
env.globals["link"] = link
env.globals["nav"] = NAV
env.globals["presets"] = PRESETS
env.globals["refresh_choices"] = REFRESH_CHOICES


def render(
    request: Request,
    template: str,
    *,
    title: str,
    time_range: TimeRange | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """`template` with the page chrome's context: nav state, the range and the page's own query.

    `time_range` None hides the range picker (pages about one object, not a period).
    """
    path = request.url.path
    current = max((p for _, p in NAV if path == p or (p != "/" and path.startswith(p + "/"))), key=len, default="")
    # Other query parameters the picker must keep (a service filter survives a range change).
    kept: dict[str, str | list[str]] = {}
    for key in request.query_params:
        if key not in ("since", "start", "end", "refresh"):
            values = request.query_params.getlist(key)
            kept[key] = values[0] if len(values) == 1 else values
    html = env.get_template(template).render(
        title=title,
        request_path=path,
        current_nav=current,
        time_range=time_range,
        kept_params=kept,
        receivers=_receivers(request),
        signed_in=signed_in(request),
        **context,
    )
    return HTMLResponse(html, status_code=status_code)


def signed_in(request: Request) -> str | None:
    """The name of the token a page was requested with, when auth is on (the nav shows it)."""
    token = getattr(request.state, "token", None)
    return token.name if token is not None else None


def may_change(request: Request) -> bool:
    """Whether this request may make changes from a page (silences): auth off, or an admin token."""
    if getattr(request.app.state, "auth", None) is None:
        return True
    token = getattr(request.state, "token", None)
    return token is not None and token.allows("admin")


def render_error(request: Request, error: PageError) -> HTMLResponse:
    return render(request, "error.html", title=error.title, status_code=error.status, message=error.message)
