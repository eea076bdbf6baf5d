"""The network page: throughput per customer and interface, top talkers, TCP health per
customer, and the flow exporters as the receiver sees them."""

from __future__ import annotations

import ipaddress
from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from vigil.dashboards.buckets import bucket_seconds, bucket_starts
from vigil.dashboards.charts import Line, time_series
from vigil.dashboards.reads import PageReads
from vigil.dashboards.render import PageError, Range, Reader, render
from vigil.dashboards.timerange import TimeRange
from vigil.store.flows_read import (
    LabelledSeries,
    TopTalker,
    TopTalkersBy,
    customer_throughput,
    flow_choices,
    interface_throughput,
    network_health,
    top_customers,
    top_talkers,
)

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

TALKER_LIMIT = 20
CHART_SERIES = 5  # customers or interfaces per chart
# Customers first: that tab reads the per-minute rollup, the others single flows.
TALKER_TABS: dict[str, str] = {"customer": "Customers", "src": "Sources", "dst": "Destinations", "pair": "Pairs"}
_DIRECTIONS = {"in": "sent", "out": "received"}


def _interface(value: str) -> tuple[str, int]:
    """``exporter:ifindex`` (IPv6 exporters may be bracketed) as (exporter, index)."""
    exporter, _, index = value.strip().rpartition(":")
    exporter = exporter.strip("[]")
    try:
        ipaddress.ip_address(exporter)
        number = int(index)
    except ValueError:
        number = -1
    if not 0 <= number < 2**32:
        raise PageError(
            400,
            "Bad interface",
            f"interface={value!r} is not exporter:ifindex; give the exporter's address and the interface index, "
            "e.g. 192.0.2.1:7, as the interface list offers them.",
        )
    return exporter, number


def _chart(
    series: list[LabelledSeries], time_range: TimeRange, step_s: int, title: str, labels: dict[str, str]
) -> dict[str, Any]:
    starts = bucket_starts(time_range, step_s)
    lines = []
    for s in series:
        # Minutes without traffic are 0 b/s, not gaps: a line must drop when traffic stops.
        values = dict(s.bits_per_s)
        lines.append(
            Line(
                f"{s.label} {labels[s.direction]}",
                starts,
                [values.get(t, 0.0) for t in starts],
                dash="solid" if s.direction == "in" else "dot",
            )
        )
    return time_series(lines, time_range=time_range, title=title, y_title="bits/s")


def _talkers(reader: Reader, by: str, time_range: TimeRange) -> list[TopTalker]:
    if by == "customer":  # the rollup has customers; addresses exist only on single flows
        return top_customers(reader.query, start_s=time_range.start_s, end_s=time_range.end_s, limit=TALKER_LIMIT)
    return top_talkers(
        reader.query, by=cast(TopTalkersBy, by), start_s=time_range.start_s, end_s=time_range.end_s, limit=TALKER_LIMIT
    )


@router.get("/network", response_class=HTMLResponse)
def network_page(
    request: Request,
    reader: Reader,
    time_range: Range,
    customer: str | None = None,
    interface: str | None = None,
    talkers: str = "customer",
) -> HTMLResponse:
    if talkers not in TALKER_TABS:
        raise PageError(
            400, "Bad talkers tab", f"talkers={talkers!r} is not a tab; choose one of {', '.join(TALKER_TABS)}."
        )
    exporter, index = _interface(interface) if interface else (None, None)
    start_s, end_s = time_range.start_s, time_range.end_s
    step_s = bucket_seconds(time_range)
    charted: dict[str, Any] = {
        "start_s": start_s,
        "end_s": end_s,
        "step_s": step_s,
        "limit": CHART_SERIES,
        "customer": customer or None,
        "exporter": exporter,
        "interface": index,
    }
    with PageReads() as reads:
        customers_read = reads.start(customer_throughput, reader.query, **charted)
        interfaces_read = reads.start(interface_throughput, reader.query, **charted)
        # The page shows no ports per exporter: skip merging them.
        health = reads.start(network_health, reader.query, start_s=start_s, end_s=end_s, exporter_ports=False)
        choices_read = reads.start(flow_choices, reader.query, start_s=start_s, end_s=end_s)
        top = reads.start(_talkers, reader, talkers, time_range)
    by_customer, by_interface, choices = customers_read.result(), interfaces_read.result(), choices_read.result()
    per = f"per {step_s // 60} min" if step_s > 60 else "per minute"
    return render(
        request,
        "network.html",
        title="Network",
        time_range=time_range,
        customer=customer or "",
        interface=interface or "",
        talkers=talkers,
        chart_series=CHART_SERIES,
        talker_tabs=TALKER_TABS,
        top=top.result(),
        customer_chart=_chart(by_customer, time_range, step_s, f"Customers, bits/s {per}", _DIRECTIONS)
        if by_customer
        else None,
        interface_chart=_chart(
            by_interface, time_range, step_s, f"Interfaces, bits/s {per}", {"in": "in", "out": "out"}
        )
        if by_interface
        else None,
        health=health.result(),
        choices=choices,
        has_flows=bool(choices.customers or choices.interfaces),
        window_s=time_range.seconds,
    )
