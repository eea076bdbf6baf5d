"""Network health from flow records: top talkers, throughput, and health per customer and exporter."""

from __future__ import annotations

import ipaddress
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from vigil.api.deps import TimeWindow, get_reader, invalid_parameter, parse_since, time_window
from vigil.settings import parse_duration
from vigil.store.flows_read import NetworkHealth, ThroughputSeries, TopTalker, TopTalkersBy
from vigil.store.read import StoreReader

router = APIRouter(prefix="/api/v1/network", tags=["network"])


class Throughput(BaseModel):
    step_s: int
    start: int
    end: int
    series: list[ThroughputSeries]


@router.get("/top-talkers", response_model=list[TopTalker])
def top_talkers(
    reader: Annotated[StoreReader, Depends(get_reader)],
    window: Annotated[TimeWindow, Depends(time_window)],
    by: TopTalkersBy = "src",
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
) -> list[TopTalker]:
    """The heaviest talkers by bytes over the window (`since`, default 15m): source or destination
    address, source customer, or source/destination pair. Bytes and packets are scaled by the
    exporter's sampling rate."""
    return reader.top_talkers(by=by, start_s=window.start_s, end_s=window.end_s, limit=limit)


@router.get("/throughput", response_model=Throughput)
def throughput(
    reader: Annotated[StoreReader, Depends(get_reader)],
    customer: str | None = None,
    interface: Annotated[int | None, Query(ge=0, le=2**32 - 1)] = None,
    exporter: str | None = None,
    step: str = "60s",
    since: str = "1h",
) -> Throughput:
    """Bits/s and packets/s per `step` (whole minutes) and direction, for a `customer`, an
    `interface` (index, optionally on one `exporter`), or the whole network."""
    try:
        step_s = parse_duration(step)
    except ValueError:
        raise invalid_parameter("step", step, "a duration such as 60s, 5m or 1h") from None
    if step_s < 60 or step_s % 60:
        raise invalid_parameter("step", step, "whole minutes (60s, 5m, 1h): flows are rolled up per minute")
    window_s = parse_since(since)
    if exporter is not None:
        try:
            ipaddress.ip_address(exporter)
        except ValueError:
            raise invalid_parameter("exporter", exporter, "an IPv4 or IPv6 address") from None
    now = time.time()
    start = int(now - window_s) // int(step_s) * int(step_s)
    series = reader.throughput(
        start_s=start, end_s=now, step_s=int(step_s), customer=customer, interface=interface, exporter=exporter
    )
    return Throughput(step_s=int(step_s), start=start, end=int(now), series=series)


@router.get("/health", response_model=NetworkHealth)
def health(
    reader: Annotated[StoreReader, Depends(get_reader)],
    window: Annotated[TimeWindow, Depends(time_window)],
) -> NetworkHealth:
    """Per customer and per exporter over the window (`since`, default 15m): throughput, flows/s,
    the share of TCP flows with SYN but no ACK (failed handshakes) and with RST, top destination
    ports, and for exporters their last packet, templates, sampling rate and malformed counts."""
    return reader.network_health(start_s=window.start_s, end_s=window.end_s)
