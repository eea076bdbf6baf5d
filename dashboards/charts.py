"""Chart specifications for plotly.js, built on the server and embedded as JSON.

Pages pass a spec to the ``chart`` macro; ``static/charts.js`` draws it with the plotly.js
in `vendor/` (served by Vigil, no CDN). Times are UTC strings so the
browser shows UTC whatever its own zone. Text from telemetry (versions, finding titles)
is HTML-escaped: plotly reads a little HTML in annotations and labels.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vigil.dashboards.timerange import TimeRange

__all__ = ["Band", "Line", "Marker", "bars", "plotly_time", "time_series"]

_DEPLOY_COLOR = "#7c3aed"
_BAND_COLORS = {"critical": "#c62828", "page": "#c62828", "warning": "#ef6c00", "info": "#1565c0"}
_PALETTE = ("#2f6fdf", "#c62828", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#8d6e63", "#546e7a")


def plotly_time(seconds: float) -> str:
    """A UTC instant as plotly reads dates: ``2026-11-22 10:00:00.000``."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{int(seconds * 1000) % 1000:03d}"


@dataclass(frozen=True, slots=True)
class Line:
    name: str
    times_s: Sequence[float]
    values: Sequence[float | None]
    dash: str = "solid"


@dataclass(frozen=True, slots=True)
class Marker:
    """A vertical line at an instant, e.g. a deploy; `url` makes its label a link."""

    at_s: float
    label: str
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Band:
    """A shaded span of time, e.g. an open or resolved finding; `severity` picks the colour."""

    start_s: float
    end_s: float
    label: str
    severity: str = "warning"


def _layout(height: int, title: str, y_title: str) -> dict[str, Any]:
    return {
        "title": {"text": html.escape(title), "font": {"size": 13}, "x": 0, "xanchor": "left"},
        "height": height,
        "margin": {"l": 55, "r": 15, "t": 34, "b": 30},
        "yaxis": {"title": {"text": html.escape(y_title)}, "rangemode": "tozero", "automargin": True},
        # Top right, beside the title: below the plot it collides with the date under the time axis.
        "legend": {"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"},
        "hovermode": "x unified",
        "paper_bgcolor": "#fff",
        "plot_bgcolor": "#fff",
        "shapes": [],
        "annotations": [],
    }


def time_series(
    lines: Sequence[Line],
    *,
    time_range: TimeRange,
    title: str,
    y_title: str,
    markers: Sequence[Marker] = (),
    bands: Sequence[Band] = (),
    height: int = 220,
    kind: str = "lines",
) -> dict[str, Any]:
    """Lines (or stacked bars with `kind="bars"`) over the page's range, with deploy markers and
    finding bands. Dragging across the chart zooms the page to that range (see charts.js)."""
    layout = _layout(height, title, y_title)
    layout["xaxis"] = {
        "type": "date",
        "range": [plotly_time(time_range.start_s), plotly_time(time_range.end_s)],
        "showgrid": False,
    }
    if kind == "bars":
        layout["barmode"] = "stack"
    for band in bands:
        start, end = max(band.start_s, time_range.start_s), min(band.end_s, time_range.end_s)
        if end <= start:
            continue
        layout["shapes"].append(
            {
                "type": "rect",
                "xref": "x",
                "yref": "paper",
                "x0": plotly_time(start),
                "x1": plotly_time(end),
                "y0": 0,
                "y1": 1,
                "fillcolor": _BAND_COLORS.get(band.severity, _BAND_COLORS["warning"]),
                "opacity": 0.13,
                "line": {"width": 0},
                "layer": "below",
                "label": {"text": html.escape(band.label), "textposition": "top left", "font": {"size": 10}},
            }
        )
    for marker in markers:
        if not time_range.start_s <= marker.at_s <= time_range.end_s:
            continue
        at = plotly_time(marker.at_s)
        text = html.escape(marker.label)
        if marker.url:
            text = f'<a href="{html.escape(marker.url)}">{text}</a>'
        layout["shapes"].append(
            {
                "type": "line",
                "xref": "x",
                "yref": "paper",
                "x0": at,
                "x1": at,
                "y0": 0,
                "y1": 1,
                "line": {"color": _DEPLOY_COLOR, "width": 1.5, "dash": "dot"},
            }
        )
        layout["annotations"].append(
            {
                "x": at,
                "y": 1,
                "xref": "x",
                "yref": "paper",
                "text": text,
                "showarrow": False,
                "xanchor": "left",
                "yanchor": "bottom",
                "font": {"size": 10, "color": _DEPLOY_COLOR},
            }
        )
    data = []
    for i, line in enumerate(lines):
        trace: dict[str, Any] = {
            "name": html.escape(line.name),
            "x": [plotly_time(t) for t in line.times_s],
            "y": list(line.values),
            "marker": {"color": _PALETTE[i % len(_PALETTE)]},
        }
        if kind == "bars":
            trace["type"] = "bar"
        else:
            trace.update(type="scatter", mode="lines", line={"width": 1.6, "dash": line.dash}, connectgaps=False)
        data.append(trace)
    return {"data": data, "layout": layout, "zoom": True}


def bars(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    x_title: str,
    y_title: str,
    urls: Sequence[str] | None = None,
    highlight: Sequence[bool] | None = None,
    height: int = 200,
) -> dict[str, Any]:
    """A bar chart over categories (e.g. a latency histogram); a bar with a url is a link."""
    layout = _layout(height, title, y_title)
    layout["xaxis"] = {"type": "category", "title": {"text": html.escape(x_title)}}
    layout["hovermode"] = "closest"
    layout["bargap"] = 0.05
    colors = [_PALETTE[1] if highlight is not None and highlight[i] else _PALETTE[0] for i in range(len(labels))]
    trace: dict[str, Any] = {
        "type": "bar",
        "x": [html.escape(label) for label in labels],
        "y": list(values),
        "marker": {"color": colors},
    }
    if urls is not None:
        trace["customdata"] = list(urls)
    return {"data": [trace], "layout": layout, "zoom": False}
