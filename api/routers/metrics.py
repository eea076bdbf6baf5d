"""Metrics: the catalog (names, types, label keys) and series aggregated per step."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from vigil.api.deps import get_reader, invalid_parameter, parse_since
from vigil.settings import parse_duration
from vigil.store.metrics_read import AGGREGATIONS, MetricInfo, MetricQuery, MetricQueryError
from vigil.store.read import StoreReader

router = APIRouter(prefix="/api/v1", tags=["metrics"])


class SeriesOut(BaseModel):
    labels: dict[str, str]
    points: list[tuple[int, float]]


class MetricQueryResult(BaseModel):
    name: str
    type: str
    agg: str
    step_s: int
    start: int
    end: int
    series: list[SeriesOut]


@router.get("/metrics", response_model=list[MetricInfo])
def list_metrics(
    reader: Annotated[StoreReader, Depends(get_reader)],
    service: str | None = None,
    since: str = "24h",
) -> list[MetricInfo]:
    """Every metric recorded in the window (`since`, default 24h, counted in whole days), with its
    type, unit, description, the services that sent it and its label (attribute) keys."""
    now = time.time()
    return reader.metrics(start_s=now - parse_since(since), end_s=now, service=service)


def _step(value: str) -> int:
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise invalid_parameter("step", value, "a duration such as 10s, 60s or 5m") from None
    if seconds < 1 or seconds != int(seconds):
        raise invalid_parameter("step", value, "a whole number of seconds, at least 1s")
    return int(seconds)


def _labels(parameter: str, values: list[str]) -> list[str]:
    keys = [key.strip() for value in values for key in value.split(",")]
    if any(not key for key in keys):
        raise invalid_parameter(parameter, ",".join(values), "comma-separated label keys such as service,route")
    return keys


def _filters(values: list[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for value in values:
        key, sep, expected = value.partition(":")
        if not sep or not key:
            raise invalid_parameter("filter", value, "key:value, e.g. service:checkout or route:/cart")
        pairs.append((key, expected))
    return tuple(pairs)


@router.get("/metrics/query", response_model=MetricQueryResult)
def query_metric(
    reader: Annotated[StoreReader, Depends(get_reader)],
    name: Annotated[str, Query(min_length=1)],
    agg: str = "avg",
    step: str = "60s",
    since: str = "1h",
    group_by: Annotated[list[str] | None, Query()] = None,
    filter_: Annotated[list[str] | None, Query(alias="filter")] = None,
    type_: Annotated[str | None, Query(alias="type")] = None,
) -> MetricQueryResult:
    """`name` aggregated per `step` over the last `since`: one series of `[unix seconds, value]` per
    distinct value of the `group_by` keys (`service`, `resource.<key>` or a point attribute;
    comma-separated or repeated). `filter=key:value` (repeatable) keeps matching points.

    `agg` is avg, min, max, p50, p95, p99 (of values; for histograms and summaries of the
    observations), sum (what was added in the step) or rate (added per second; for histograms
    and summaries, observations per second). `type` picks the point type when a name has
    several."""
    if agg not in AGGREGATIONS:
        raise invalid_parameter("agg", agg, ", ".join(AGGREGATIONS))
    step_s = _step(step)
    window_s = parse_since(since)
    groups = tuple(_labels("group_by", group_by or []))
    filters = _filters(filter_ or [])
    known = reader.metric_types(name)
    if not known:
        raise invalid_parameter("name", name, "the name of a recorded metric (see GET /api/v1/metrics)")
    if type_ is None:
        if len(known) > 1:
            raise invalid_parameter("type", type_, f"one of {', '.join(known)}: {name!r} has several types")
        metric_type = known[0]
    elif type_ in known:
        metric_type = type_
    else:
        raise invalid_parameter("type", type_, f"one of {', '.join(known)}, the types {name!r} was recorded as")
    now = time.time()
    query = MetricQuery(name, metric_type, agg, step_s, now - window_s, now, groups, filters)
    try:
        series = reader.metric_series(query)
    except MetricQueryError as exc:
        raise invalid_parameter(exc.parameter, exc.value, exc.expected) from None
    return MetricQueryResult(
        name=name,
        type=metric_type,
        agg=agg,
        step_s=step_s,
        start=query.aligned_start_s,
        end=int(now),
        series=[SeriesOut(labels=s.labels, points=s.points) for s in series],
    )
